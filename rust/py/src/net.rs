//! `gateway._rust.Receiver` and friends: the Rust framer on a socket fd.
//!
//! `receive()` polls the socket (and a wake fd) and feeds the sans-IO
//! receiver with the GIL released, returning one event as a plain tuple.
//! The socket stays owned by Python; only its fd is used here.

use std::path::PathBuf;

use dicom_gateway_codec as codec;
use codec::{Dataset, Event, Limits, SpoolConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::gil;

const RECV_BUFFER: usize = 256 * 1024;

enum Outcome {
    Event(Event),
    Error(codec::CodecError),
    Wake,
    Timeout,
    Closed(bool),
    OsError(std::io::Error),
}

#[pyclass(module = "gateway._rust")]
pub struct Receiver {
    fd: i32,
    rx: codec::Receiver,
    buf: Vec<u8>,
    closed: bool,
}

fn event_tuple(py: Python<'_>, event: Event) -> PyResult<PyObject> {
    Ok(match event {
        Event::Pdu { pdu_type, bytes } => ("pdu", pdu_type, PyBytes::new(py, &bytes)).into_pyobject(py)?.into_any().unbind(),
        Event::Message(m) => {
            let command = PyBytes::new(py, &m.command);
            let (data, path, len): (PyObject, PyObject, u64) = match m.dataset {
                None => (py.None(), py.None(), 0),
                Some(Dataset::Memory(v)) => (PyBytes::new(py, &v).into_any().unbind(), py.None(), v.len() as u64),
                Some(Dataset::Spooled { path, len }) => {
                    (py.None(), path.to_string_lossy().into_owned().into_pyobject(py)?.into_any().unbind(), len)
                }
            };
            PyTuple::new(py, [
                "message".into_pyobject(py)?.into_any().unbind(),
                m.context_id.into_pyobject(py)?.into_any().unbind(),
                command.into_any().unbind(),
                data,
                path,
                len.into_pyobject(py)?.into_any().unbind(),
            ])?
            .into_any()
            .unbind()
        }
    })
}

fn error_tuple(py: Python<'_>, e: &codec::CodecError) -> PyResult<PyObject> {
    Ok(("error", e.abort_reason(), e.to_string()).into_pyobject(py)?.into_any().unbind())
}

/// poll() the socket and the wake fd; Ok((socket_readable, woken)).
fn wait(fd: i32, wake_fd: i32, timeout_ms: i32) -> std::io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake_fd, events: libc::POLLIN, revents: 0 },
    ];
    let n = if wake_fd >= 0 { 2 } else { 1 };
    // SAFETY: `fds` is a valid array of `n` pollfd structs for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sock = fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    let woken = n == 2 && fds[1].revents & libc::POLLIN != 0;
    Ok((sock, woken))
}

fn drain(wake_fd: i32) {
    let mut sink = [0u8; 64];
    loop {
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::read(wake_fd, sink.as_mut_ptr().cast(), sink.len()) };
        if n <= 0 {
            break;
        }
    }
}

impl Receiver {
    fn step(&mut self, timeout: Option<f64>, wake_fd: i32) -> Outcome {
        let deadline = timeout.map(|t| std::time::Instant::now() + std::time::Duration::from_secs_f64(t.max(0.0)));
        loop {
            if let Some(ev) = self.rx.next_event() {
                return Outcome::Event(ev);
            }
            if let Some(e) = self.rx.error() {
                return Outcome::Error(e.clone());
            }
            if self.closed {
                return Outcome::Closed(self.rx.is_mid_pdu() || self.rx.is_mid_message());
            }
            let timeout_ms = match deadline {
                None => -1,
                Some(d) => d.saturating_duration_since(std::time::Instant::now()).as_millis().min(i32::MAX as u128) as i32,
            };
            let (readable, woken) = match wait(self.fd, wake_fd, timeout_ms) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Outcome::OsError(e),
            };
            if !readable {
                if woken {
                    drain(wake_fd);
                    return Outcome::Wake;
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Outcome::Timeout;
                }
                continue;
            }
            // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
            let n = unsafe { libc::recv(self.fd, self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT) };
            if n > 0 {
                let chunk = &self.buf[..n as usize];
                // An error is kept in the receiver and reported after the
                // events completed before it.
                let _ = self.rx.feed(chunk);
                continue;
            }
            if n == 0 {
                self.closed = true;
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => continue,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe => {
                    self.closed = true;
                }
                _ => return Outcome::OsError(err),
            }
        }
    }
}

#[pymethods]
impl Receiver {
    #[new]
    #[pyo3(signature = (fd, *, max_pdu, max_message, spool_dir, spool_threshold, control_pdu_limit = 1 << 20))]
    fn new(fd: i32, max_pdu: u32, max_message: u64, spool_dir: PathBuf, spool_threshold: u64, control_pdu_limit: u32) -> Self {
        let limits = Limits { max_pdu, control_pdu_limit, max_message };
        let spool = Some(SpoolConfig { dir: spool_dir, threshold: spool_threshold });
        Receiver { fd, rx: codec::Receiver::new(limits, spool), buf: vec![0u8; RECV_BUFFER], closed: false }
    }

    /// Block (GIL released) until one event: a control PDU, a whole DIMSE
    /// message, a wake-up, a timeout, the peer closing, or a protocol error.
    #[pyo3(signature = (timeout, wake_fd = -1))]
    fn receive(&mut self, py: Python<'_>, timeout: Option<f64>, wake_fd: i32) -> PyResult<PyObject> {
        let outcome = gil::detached(py, || self.step(timeout, wake_fd));
        match outcome {
            Outcome::Event(ev) => event_tuple(py, ev),
            Outcome::Error(e) => error_tuple(py, &e),
            Outcome::Wake => Ok(("wake",).into_pyobject(py)?.into_any().unbind()),
            Outcome::Timeout => Ok(("timeout",).into_pyobject(py)?.into_any().unbind()),
            Outcome::Closed(mid) => Ok(("closed", mid).into_pyobject(py)?.into_any().unbind()),
            Outcome::OsError(e) => Err(e.into()),
        }
    }

    /// Sans-IO use (TLS sockets, tests): feed bytes, get every event they complete.
    fn feed(&mut self, py: Python<'_>, data: Vec<u8>) -> PyResult<Py<PyList>> {
        let _ = gil::detached(py, || self.rx.feed(&data));
        let out = PyList::empty(py);
        while let Some(ev) = self.rx.next_event() {
            out.append(event_tuple(py, ev)?)?;
        }
        if let Some(e) = self.rx.error() {
            out.append(error_tuple(py, e)?)?;
        }
        Ok(out.unbind())
    }

    #[getter]
    fn max_pdu(&self) -> u32 {
        self.rx.limits().max_pdu
    }

    #[setter]
    fn set_max_pdu(&mut self, value: u32) {
        self.rx.set_max_pdu(value);
    }

    /// Bytes held from an unfinished PDU header, PDV header or control PDU.
    #[getter]
    fn buffered(&self) -> usize {
        self.rx.buffered()
    }

    /// True while a PDU or a DIMSE message is only partly received.
    #[getter]
    fn mid_message(&self) -> bool {
        self.rx.is_mid_pdu() || self.rx.is_mid_message()
    }
}

/// Split a DIMSE message into encoded P-DATA-TF PDUs of at most `max_pdu`.
#[pyfunction]
#[pyo3(signature = (context_id, command, dataset, max_pdu))]
fn fragment_message(py: Python<'_>, context_id: u8, command: Vec<u8>, dataset: Option<Vec<u8>>, max_pdu: u32) -> PyResult<Py<PyList>> {
    let pdus = gil::detached(py, || codec::fragment_message(context_id, &command, dataset.as_deref(), max_pdu));
    let out = PyList::empty(py);
    for p in pdus {
        out.append(PyBytes::new(py, &p))?;
    }
    Ok(out.unbind())
}

fn ae_str(ae: &[u8; 16]) -> String {
    String::from_utf8_lossy(ae).trim().to_string()
}

/// A plain-dict view of any PDU (tests, diagnostics); ValueError on bad input.
#[pyfunction]
fn decode_pdu(py: Python<'_>, data: Vec<u8>) -> PyResult<Py<PyDict>> {
    let pdu = codec::decode(&data).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    match pdu {
        codec::Pdu::AssociateRq(rq) => {
            d.set_item("type", "A-ASSOCIATE-RQ")?;
            d.set_item("called_ae", ae_str(&rq.called_ae))?;
            d.set_item("calling_ae", ae_str(&rq.calling_ae))?;
            d.set_item("application_context", rq.application_context)?;
            let cxs: Vec<(u8, String, Vec<String>)> =
                rq.presentation_contexts.into_iter().map(|c| (c.id, c.abstract_syntax, c.transfer_syntaxes)).collect();
            d.set_item("presentation_contexts", cxs)?;
            d.set_item("user_items", rq.user_items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>())?;
        }
        codec::Pdu::AssociateAc(ac) => {
            d.set_item("type", "A-ASSOCIATE-AC")?;
            d.set_item("called_ae", ae_str(&ac.called_ae))?;
            d.set_item("calling_ae", ae_str(&ac.calling_ae))?;
            let cxs: Vec<(u8, u8, String)> =
                ac.presentation_contexts.into_iter().map(|c| (c.id, c.result, c.transfer_syntax)).collect();
            d.set_item("presentation_contexts", cxs)?;
            d.set_item("user_items", ac.user_items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>())?;
        }
        codec::Pdu::AssociateRj { result, source, reason } => {
            d.set_item("type", "A-ASSOCIATE-RJ")?;
            d.set_item("result", result)?;
            d.set_item("source", source)?;
            d.set_item("reason", reason)?;
        }
        codec::Pdu::PData(pdvs) => {
            d.set_item("type", "P-DATA-TF")?;
            let items: Vec<(u8, u8, usize)> = pdvs.iter().map(|p| (p.context_id, p.control, p.data.len())).collect();
            d.set_item("pdvs", items)?;
        }
        codec::Pdu::ReleaseRq => d.set_item("type", "A-RELEASE-RQ")?,
        codec::Pdu::ReleaseRp => d.set_item("type", "A-RELEASE-RP")?,
        codec::Pdu::Abort { source, reason } => {
            d.set_item("type", "A-ABORT")?;
            d.set_item("source", source)?;
            d.set_item("reason", reason)?;
        }
    }
    Ok(d.unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Receiver>()?;
    m.add_function(wrap_pyfunction!(fragment_message, m)?)?;
    m.add_function(wrap_pyfunction!(decode_pdu, m)?)?;
    Ok(())
}
