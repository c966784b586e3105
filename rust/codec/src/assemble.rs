//! Coalescing the PDV fragments of one DIMSE message (PS3.7 Annex E,
//! PS3.8 E.2) into a command set and a dataset, spooling large datasets
//! straight to a file as they arrive.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CodecError, Result};

/// No real command set comes near this.
pub const MAX_COMMAND: usize = 1 << 20;

/// The dataset of a complete message.
#[derive(Debug, PartialEq, Eq)]
pub enum Dataset {
    Memory(Vec<u8>),
    /// Spooled to a file the caller now owns (and must remove).
    Spooled { path: PathBuf, len: u64 },
}

impl Dataset {
    pub fn len(&self) -> u64 {
        match self {
            Dataset::Memory(v) => v.len() as u64,
            Dataset::Spooled { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One complete DIMSE message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub context_id: u8,
    pub command: Vec<u8>,
    pub dataset: Option<Dataset>,
}

/// Where spooled datasets go. `None` keeps every dataset in memory.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Datasets larger than this many bytes are spooled to a file.
    pub threshold: u64,
}

static SPOOL_COUNTER: AtomicU64 = AtomicU64::new(0);

fn create_spool(dir: &Path) -> Result<(PathBuf, File)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for _ in 0..16 {
        let n = SPOOL_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("spool-{}-{nanos:09}-{n}.part", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CodecError::Io(format!("{}: {e}", path.display()))),
        }
    }
    Err(CodecError::Io("could not create a unique spool file".into()))
}

enum Sink {
    Memory(Vec<u8>),
    File { path: PathBuf, out: BufWriter<File>, len: u64 },
}

impl Sink {
    fn len(&self) -> u64 {
        match self {
            Sink::Memory(v) => v.len() as u64,
            Sink::File { len, .. } => *len,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first command fragment.
    Idle,
    /// Inside the command set.
    Command,
    /// The command is complete and announced a dataset.
    Dataset,
}

pub struct Assembler {
    phase: Phase,
    context_id: u8,
    command: Vec<u8>,
    sink: Option<Sink>,
    /// Flags of the fragment being received.
    current_is_command: bool,
    current_is_last: bool,
    spool: Option<SpoolConfig>,
    max_message: u64,
}

impl Assembler {
    pub fn new(spool: Option<SpoolConfig>, max_message: u64) -> Self {
        Assembler {
            phase: Phase::Idle,
            context_id: 0,
            command: Vec::new(),
            sink: None,
            current_is_command: false,
            current_is_last: false,
            spool,
            max_message,
        }
    }

    /// True between the first fragment of a message and its last.
    pub fn in_progress(&self) -> bool {
        self.phase != Phase::Idle || !self.command.is_empty()
    }

    /// A PDV header arrived: check it may come now.
    pub fn begin(&mut self, context_id: u8, control: u8) -> Result<()> {
        let is_command = control & 1 != 0;
        match self.phase {
            Phase::Idle => {
                if !is_command {
                    return Err(CodecError::UnexpectedFragment("a dataset fragment before any command"));
                }
                self.context_id = context_id;
                self.phase = Phase::Command;
            }
            Phase::Command => {
                if !is_command {
                    return Err(CodecError::UnexpectedFragment("a dataset fragment inside an unfinished command"));
                }
                if context_id != self.context_id {
                    return Err(CodecError::ContextMismatch { command: self.context_id, dataset: context_id });
                }
            }
            Phase::Dataset => {
                if is_command {
                    return Err(CodecError::UnexpectedFragment("a command fragment while a dataset is expected"));
                }
                if context_id != self.context_id {
                    return Err(CodecError::ContextMismatch { command: self.context_id, dataset: context_id });
                }
            }
        }
        self.current_is_command = is_command;
        self.current_is_last = control & 2 != 0;
        Ok(())
    }

    /// Bytes of the current fragment (any split).
    pub fn data(&mut self, bytes: &[u8]) -> Result<()> {
        if self.current_is_command {
            if self.command.len() + bytes.len() > MAX_COMMAND {
                return Err(CodecError::CommandTooLarge(self.command.len() + bytes.len()));
            }
            self.command.extend_from_slice(bytes);
            return Ok(());
        }
        let sink = self.sink.get_or_insert_with(|| Sink::Memory(Vec::new()));
        let new_len = sink.len() + bytes.len() as u64;
        if self.max_message != 0 && new_len > self.max_message {
            return Err(CodecError::MessageTooLarge { limit: self.max_message });
        }
        if let (Sink::Memory(buf), Some(spool)) = (&mut *sink, &self.spool) {
            if new_len > spool.threshold {
                let (path, file) = create_spool(&spool.dir)?;
                let mut out = BufWriter::with_capacity(1 << 20, file);
                let res = out.write_all(buf);
                let len = buf.len() as u64;
                *sink = Sink::File { path, out, len };
                res.map_err(|e| CodecError::Io(e.to_string()))?;
            }
        }
        match sink {
            Sink::Memory(buf) => buf.extend_from_slice(bytes),
            Sink::File { out, len, path } => {
                out.write_all(bytes).map_err(|e| CodecError::Io(format!("{}: {e}", path.display())))?;
                *len += bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// The current fragment ended; returns the message if it was the last one.
    pub fn end(&mut self) -> Result<Option<Message>> {
        if !self.current_is_last {
            return Ok(None);
        }
        if self.current_is_command {
            if command_has_dataset(&self.command)? {
                self.phase = Phase::Dataset;
                return Ok(None);
            }
            let command = std::mem::take(&mut self.command);
            self.phase = Phase::Idle;
            return Ok(Some(Message { context_id: self.context_id, command, dataset: None }));
        }
        let dataset = match self.sink.take().unwrap_or(Sink::Memory(Vec::new())) {
            Sink::Memory(v) => Dataset::Memory(v),
            Sink::File { path, out, len } => {
                // Hand the file over only once every byte is in it.
                let flushed = out.into_inner().map_err(|e| e.to_string()).and_then(|f| f.sync_data().map_err(|e| e.to_string()));
                if let Err(e) = flushed {
                    let _ = std::fs::remove_file(&path);
                    return Err(CodecError::Io(format!("{}: {e}", path.display())));
                }
                Dataset::Spooled { path, len }
            }
        };
        let command = std::mem::take(&mut self.command);
        self.phase = Phase::Idle;
        Ok(Some(Message { context_id: self.context_id, command, dataset: Some(dataset) }))
    }

    /// Drop an unfinished message, removing its spool file.
    pub fn reset(&mut self) {
        if let Some(Sink::File { path, out, .. }) = self.sink.take() {
            drop(out);
            let _ = std::fs::remove_file(path);
        }
        self.command.clear();
        self.phase = Phase::Idle;
    }
}

impl Drop for Assembler {
    fn drop(&mut self) {
        self.reset();
    }
}

/// Walk an implicit VR little endian command set for (0000,0800)
/// CommandDataSetType: 0x0101 means no dataset follows (PS3.7 E.1).
pub fn command_has_dataset(command: &[u8]) -> Result<bool> {
    let mut pos = 0usize;
    while pos + 8 <= command.len() {
        let group = u16::from_le_bytes([command[pos], command[pos + 1]]);
        let element = u16::from_le_bytes([command[pos + 2], command[pos + 3]]);
        let len = u32::from_le_bytes([command[pos + 4], command[pos + 5], command[pos + 6], command[pos + 7]]) as usize;
        let value_start = pos + 8;
        let value_end = value_start
            .checked_add(len)
            .filter(|&end| end <= command.len())
            .ok_or_else(|| CodecError::BadCommand(format!("element ({group:04X},{element:04X}) runs past the end")))?;
        if group != 0x0000 {
            return Err(CodecError::BadCommand(format!("element ({group:04X},{element:04X}) is not in group 0000")));
        }
        if element == 0x0800 {
            if len != 2 {
                return Err(CodecError::BadCommand("CommandDataSetType is not a US".into()));
            }
            let v = u16::from_le_bytes([command[value_start], command[value_start + 1]]);
            return Ok(v != 0x0101);
        }
        pos = value_end;
    }
    Err(CodecError::BadCommand("no (0000,0800) CommandDataSetType".into()))
}
