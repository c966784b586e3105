//! The sans-IO receiver: `feed(bytes)` in, events out, never blocking.
//!
//! Control PDUs are buffered whole (they are small) and validated by a full
//! decode. P-DATA-TF PDUs are parsed as a stream: PDV payload bytes go from
//! the input straight into the message assembler, so a 64 MB dataset never
//! sits in a PDU buffer and is spooled to disk as it arrives.

use std::collections::VecDeque;

use crate::assemble::{Assembler, Message, SpoolConfig};
use crate::error::{CodecError, Result};
use crate::pdu::{self, P_DATA_TF};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest P-DATA-TF PDU length accepted (what we advertised); 0 = unlimited.
    pub max_pdu: u32,
    /// Largest control PDU (A-ASSOCIATE and friends).
    pub control_pdu_limit: u32,
    /// Largest dataset of one message; 0 = unlimited.
    pub max_message: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_pdu: 0, control_pdu_limit: 1 << 20, max_message: 0 }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole control PDU, header included, already validated.
    Pdu { pdu_type: u8, bytes: Vec<u8> },
    /// A whole DIMSE message, all fragments coalesced.
    Message(Message),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Control { pdu_type: u8, length: u32 },
    PdvHeader { remaining_pdu: u32 },
    PdvPayload { remaining_pdu: u32, remaining_item: u32 },
}

pub struct Receiver {
    state: State,
    /// Partial header / PDV header / control PDU bytes.
    pending: Vec<u8>,
    assembler: Assembler,
    limits: Limits,
    events: VecDeque<Event>,
    error: Option<CodecError>,
}

impl Receiver {
    pub fn new(limits: Limits, spool: Option<SpoolConfig>) -> Self {
        Receiver {
            state: State::Header,
            pending: Vec::with_capacity(256),
            assembler: Assembler::new(spool, limits.max_message),
            limits,
            events: VecDeque::new(),
            error: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn set_max_pdu(&mut self, max_pdu: u32) {
        self.limits.max_pdu = max_pdu;
    }

    /// Take the next complete event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The error that poisoned this receiver, once its earlier events are taken.
    pub fn error(&self) -> Option<&CodecError> {
        self.error.as_ref()
    }

    /// Bytes received that are not yet part of a complete event: the
    /// connection ending now would cut a PDU or a message short.
    pub fn is_mid_pdu(&self) -> bool {
        self.state != State::Header || !self.pending.is_empty()
    }

    pub fn is_mid_message(&self) -> bool {
        self.assembler.in_progress()
    }

    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Feed received bytes. Events become available through `next_event`;
    /// events completed before an error stay available.
    pub fn feed(&mut self, input: &[u8]) -> Result<()> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.feed_inner(input);
        if let Err(e) = &result {
            self.error = Some(e.clone());
            self.assembler.reset();
            self.pending.clear();
        }
        result
    }

    /// Move up to `want - pending.len()` bytes from `input` into `pending`.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let need = want.saturating_sub(self.pending.len());
        let n = need.min(input.len());
        self.pending.extend_from_slice(&input[..n]);
        *input = &input[n..];
        self.pending.len() >= want
    }

    fn feed_inner(&mut self, mut input: &[u8]) -> Result<()> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    if !self.fill(&mut input, 6) {
                        return Ok(());
                    }
                    let pdu_type = self.pending[0];
                    let length = u32::from_be_bytes([self.pending[2], self.pending[3], self.pending[4], self.pending[5]]);
                    match pdu_type {
                        P_DATA_TF => {
                            if self.limits.max_pdu != 0 && length > self.limits.max_pdu {
                                return Err(CodecError::PduTooLarge { pdu_type, length, limit: self.limits.max_pdu });
                            }
                            if length < 6 {
                                // At least one PDV item header (PS3.8 9.3.5).
                                return Err(CodecError::BadPduLength { pdu_type, length });
                            }
                            self.pending.clear();
                            self.state = State::PdvHeader { remaining_pdu: length };
                        }
                        pdu::ASSOCIATE_RQ | pdu::ASSOCIATE_AC => {
                            if length > self.limits.control_pdu_limit {
                                return Err(CodecError::PduTooLarge { pdu_type, length, limit: self.limits.control_pdu_limit });
                            }
                            self.state = State::Control { pdu_type, length };
                        }
                        pdu::ASSOCIATE_RJ | pdu::RELEASE_RQ | pdu::RELEASE_RP | pdu::ABORT => {
                            if length != 4 {
                                return Err(CodecError::BadPduLength { pdu_type, length });
                            }
                            self.state = State::Control { pdu_type, length };
                        }
                        other => return Err(CodecError::UnknownPduType(other)),
                    }
                }
                State::Control { pdu_type, length } => {
                    if !self.fill(&mut input, 6 + length as usize) {
                        return Ok(());
                    }
                    pdu::decode(&self.pending)?;
                    // A control PDU (an A-ABORT, typically) in the middle of a
                    // message ends that message: drop it and its spool file.
                    self.assembler.reset();
                    let bytes = std::mem::replace(&mut self.pending, Vec::with_capacity(256));
                    self.events.push_back(Event::Pdu { pdu_type, bytes });
                    self.state = State::Header;
                }
                State::PdvHeader { remaining_pdu } => {
                    if remaining_pdu < 6 {
                        return Err(CodecError::BadPdvLength { length: remaining_pdu, remaining: remaining_pdu });
                    }
                    if !self.fill(&mut input, 6) {
                        return Ok(());
                    }
                    let p = &self.pending;
                    let length = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    let context_id = p[4];
                    let control = p[5];
                    let after_len = remaining_pdu - 4;
                    if length < 2 || length > after_len {
                        return Err(CodecError::BadPdvLength { length, remaining: after_len });
                    }
                    if context_id % 2 == 0 {
                        return Err(CodecError::BadContextId(context_id));
                    }
                    self.pending.clear();
                    self.assembler.begin(context_id, control)?;
                    self.state = State::PdvPayload { remaining_pdu: after_len - length, remaining_item: length - 2 };
                    if length == 2 {
                        self.end_fragment(after_len - length)?;
                    }
                }
                State::PdvPayload { remaining_pdu, remaining_item } => {
                    let n = (remaining_item as usize).min(input.len());
                    self.assembler.data(&input[..n])?;
                    input = &input[n..];
                    let left = remaining_item - n as u32;
                    if left == 0 {
                        self.end_fragment(remaining_pdu)?;
                    } else {
                        self.state = State::PdvPayload { remaining_pdu, remaining_item: left };
                    }
                }
            }
        }
        Ok(())
    }

    fn end_fragment(&mut self, remaining_pdu: u32) -> Result<()> {
        if let Some(message) = self.assembler.end()? {
            self.events.push_back(Event::Message(message));
        }
        self.state = if remaining_pdu == 0 { State::Header } else { State::PdvHeader { remaining_pdu } };
        Ok(())
    }
}
