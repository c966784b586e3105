//! The streaming receiver: coalescing, spooling, limits, fragmentation
//! round trips fed in arbitrary chunk sizes, and every error path.

use std::path::PathBuf;

use dicom_gateway_codec::pdu::{encode, ASSOCIATE_RQ};
use dicom_gateway_codec::{
    command_has_dataset, fragment_message, CodecError, Dataset, Event, Limits, Message, Pdu, Receiver, SpoolConfig,
};
use proptest::prelude::*;

/// A C-STORE-RQ-like command: CommandField, then CommandDataSetType.
fn command(has_dataset: bool) -> Vec<u8> {
    let mut c = Vec::new();
    for (elem, value) in [(0x0100u16, 0x0001u16), (0x0800, if has_dataset { 0x0000 } else { 0x0101 })] {
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&elem.to_le_bytes());
        c.extend_from_slice(&2u32.to_le_bytes());
        c.extend_from_slice(&value.to_le_bytes());
    }
    c
}

fn spool_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-codec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn receiver(max_pdu: u32, spool: Option<SpoolConfig>) -> Receiver {
    Receiver::new(Limits { max_pdu, control_pdu_limit: 1 << 20, max_message: 0 }, spool)
}

fn feed_chunks(rx: &mut Receiver, bytes: &[u8], chunk: usize) -> Result<Vec<Event>, CodecError> {
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let r = rx.feed(piece);
        while let Some(e) = rx.next_event() {
            events.push(e);
        }
        r?;
    }
    Ok(events)
}

fn message_bytes(ctx: u8, cmd: &[u8], ds: Option<&[u8]>, max_pdu: u32) -> Vec<u8> {
    fragment_message(ctx, cmd, ds, max_pdu).concat()
}

#[test]
fn command_only_message() {
    let mut rx = receiver(16384, None);
    let events = feed_chunks(&mut rx, &message_bytes(1, &command(false), None, 16384), 7).unwrap();
    assert_eq!(events, vec![Event::Message(Message { context_id: 1, command: command(false), dataset: None })]);
    assert!(!rx.is_mid_pdu() && !rx.is_mid_message());
}

#[test]
fn fragments_are_coalesced_and_pdus_follow_each_other() {
    let ds: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut bytes = message_bytes(3, &command(true), Some(&ds), 4096);
    let mut release = Vec::new();
    encode(&Pdu::ReleaseRq, &mut release);
    bytes.extend_from_slice(&release);
    let mut rx = receiver(4096, None);
    let events = feed_chunks(&mut rx, &bytes, 1000).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Event::Message(Message { context_id: 3, command: command(true), dataset: Some(Dataset::Memory(ds)) }));
    assert_eq!(events[1], Event::Pdu { pdu_type: 5, bytes: release });
}

#[test]
fn large_dataset_is_spooled_byte_exact() {
    let dir = spool_dir("spool");
    let ds: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut rx = receiver(16384, Some(SpoolConfig { dir: dir.clone(), threshold: 100_000 }));
    let events = feed_chunks(&mut rx, &message_bytes(1, &command(true), Some(&ds), 16384), 65536).unwrap();
    match &events[..] {
        [Event::Message(Message { dataset: Some(Dataset::Spooled { path, len }), .. })] => {
            assert_eq!(*len, ds.len() as u64);
            assert_eq!(std::fs::read(path).unwrap(), ds);
            std::fs::remove_file(path).unwrap();
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn partial_spool_file_is_removed_on_error() {
    let dir = spool_dir("partial");
    let ds = vec![7u8; 500_000];
    // 20 whole PDUs of the message (~320 KB), then garbage where a PDU header belongs.
    let mut bytes = fragment_message(1, &command(true), Some(&ds), 16384)[..20].concat();
    bytes.extend_from_slice(&[0x09, 0, 0, 0, 0, 0]);
    let mut rx = receiver(16384, Some(SpoolConfig { dir: dir.clone(), threshold: 10_000 }));
    let _ = feed_chunks(&mut rx, &bytes[..200_000], 4096).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "spooling while receiving");
    assert!(rx.is_mid_message());
    assert!(feed_chunks(&mut rx, &bytes[200_000..], 4096).is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // An A-ABORT in the middle of a message discards it and its spool file.
    let mut rx = receiver(16384, Some(SpoolConfig { dir: dir.clone(), threshold: 10_000 }));
    let first_ten = fragment_message(1, &command(true), Some(&ds), 16384)[..10].concat();
    let _ = feed_chunks(&mut rx, &first_ten, 4096).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let events = feed_chunks(&mut rx, &dicom_gateway_codec::pdu::abort_pdu(0), 3).unwrap();
    assert!(matches!(&events[..], [Event::Pdu { pdu_type: 7, .. }]));
    assert!(!rx.is_mid_message());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // Dropping an unfinished receiver also removes its spool file.
    let mut rx = receiver(16384, Some(SpoolConfig { dir: dir.clone(), threshold: 10_000 }));
    let _ = feed_chunks(&mut rx, &bytes[..200_000], 4096).unwrap();
    drop(rx);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn limits_and_protocol_errors() {
    // P-DATA larger than our max PDU: refused from the header alone.
    let mut rx = receiver(16384, None);
    let e = rx.feed(&[4, 0, 0, 0xA0, 0, 0]).unwrap_err();
    assert!(matches!(e, CodecError::PduTooLarge { .. }));
    assert_eq!(e.abort_reason(), 6);
    assert!(rx.feed(b"more").is_err(), "poisoned after an error");
    // Unknown type.
    assert_eq!(receiver(0, None).feed(&[0x11, 0, 0, 0, 0, 0]).unwrap_err().abort_reason(), 1);
    // PDV item length beyond the PDU.
    let e = receiver(0, None).feed(&[4, 0, 0, 0, 0, 10, 0, 0, 3, 0xE8, 1, 3]).unwrap_err();
    assert!(matches!(e, CodecError::BadPdvLength { .. }));
    // Dataset fragment before any command.
    let e = receiver(0, None).feed(&[4, 0, 0, 0, 0, 7, 0, 0, 0, 3, 1, 2, 0xAB]).unwrap_err();
    assert_eq!(e.abort_reason(), 5);
    // Command fragment while a dataset is expected.
    let mut bytes = fragment_message(1, &command(true), None, 0).concat();
    bytes.extend_from_slice(&fragment_message(1, &command(false), None, 0).concat());
    assert_eq!(receiver(0, None).feed(&bytes).unwrap_err().abort_reason(), 5);
    // Dataset on another context than its command.
    let mut bytes = fragment_message(1, &command(true), None, 0).concat();
    bytes.extend_from_slice(&fragment_message(3, b"", Some(b"xx"), 0)[1..].concat());
    assert!(matches!(receiver(0, None).feed(&bytes).unwrap_err(), CodecError::ContextMismatch { .. }));
    // Bad item length inside an A-ASSOCIATE-RQ is caught by the receiver.
    let e = receiver(0, None).feed(&[ASSOCIATE_RQ, 0, 0, 0, 0, 4, 0, 1, 0, 0]).unwrap_err();
    assert_eq!(e.abort_reason(), 6);
    // Message larger than max_message.
    let mut rx = Receiver::new(Limits { max_pdu: 0, control_pdu_limit: 1 << 20, max_message: 1000 }, None);
    let e = rx.feed(&message_bytes(1, &command(true), Some(&[0u8; 2000]), 0)).unwrap_err();
    assert!(matches!(e, CodecError::MessageTooLarge { .. }));
    // Command without CommandDataSetType.
    assert!(command_has_dataset(&[0, 0, 0, 1, 2, 0, 0, 0, 1, 0]).is_err());
}

#[test]
fn events_before_an_error_are_kept() {
    let mut bytes = message_bytes(1, &command(false), None, 0);
    bytes.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF, 0, 0]);
    let mut rx = receiver(0, None);
    assert!(rx.feed(&bytes).is_err());
    assert!(matches!(rx.next_event(), Some(Event::Message(_))));
    assert!(rx.error().is_some());
}

#[test]
fn truncated_stream_is_mid_pdu() {
    let bytes = message_bytes(1, &command(true), Some(&[1u8; 100]), 0);
    let mut rx = receiver(0, None);
    rx.feed(&bytes[..3]).unwrap();
    assert!(rx.is_mid_pdu());
    rx.feed(&bytes[3..bytes.len() - 1]).unwrap();
    assert!(rx.next_event().is_none() && rx.is_mid_message());
}

#[test]
fn fragmentation_respects_max_pdu() {
    let ds = vec![1u8; 100_000];
    for max_pdu in [4096u32, 16384, 131072] {
        for pdu in fragment_message(1, &command(true), Some(&ds), max_pdu) {
            let len = u32::from_be_bytes([pdu[2], pdu[3], pdu[4], pdu[5]]);
            assert!(len <= max_pdu && pdu.len() == len as usize + 6);
        }
    }
    let empty = fragment_message(1, &command(true), Some(&[]), 4096);
    assert_eq!(empty.len(), 2);
    assert_eq!(empty[1][11], 0x02, "an empty dataset is one last fragment");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn fragment_then_feed_gives_back_the_message(
        size in 0usize..300_000, max_pdu in 4096u32..1_048_576, chunk in 1usize..70_000, ctx in 0u8..128,
    ) {
        let ds: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let ctx = ctx * 2 + 1;
        let mut rx = receiver(max_pdu, None);
        let chunk = if chunk > 60_000 { 1 + chunk % 3 } else { chunk };
        let events = feed_chunks(&mut rx, &message_bytes(ctx, &command(true), Some(&ds), max_pdu), chunk).unwrap();
        prop_assert_eq!(events, vec![Event::Message(Message { context_id: ctx, command: command(true), dataset: Some(Dataset::Memory(ds)) })]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..64) {
        let mut rx = receiver(16384, None);
        let _ = feed_chunks(&mut rx, &bytes, chunk);
    }
}
