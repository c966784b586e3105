//! Arbitrary bytes, in arbitrary chunks, into the streaming receiver; and
//! every PDU that decodes must re-encode to something that decodes the same.
#![no_main]

use dicom_gateway_codec::{decode, encode, Event, Limits, Receiver, SpoolConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let chunk = 1 + data[0] as usize * 8;
    let max_pdu = if data[1] & 1 == 1 { 0 } else { 4096 };
    let spool = std::env::temp_dir().join("gw-codec-fuzz");
    let _ = std::fs::create_dir_all(&spool);
    let mut rx = Receiver::new(
        Limits { max_pdu, control_pdu_limit: 1 << 16, max_message: 1 << 20 },
        Some(SpoolConfig { dir: spool, threshold: 512 }),
    );
    for piece in data[2..].chunks(chunk) {
        let failed = rx.feed(piece).is_err();
        while let Some(event) = rx.next_event() {
            match event {
                Event::Pdu { bytes, .. } => {
                    let pdu = decode(&bytes).expect("the receiver only emits PDUs that decode");
                    let mut again = Vec::new();
                    encode(&pdu, &mut again);
                    assert_eq!(decode(&again).expect("re-encoded PDU decodes"), pdu);
                }
                Event::Message(m) => {
                    if let Some(dicom_gateway_codec::Dataset::Spooled { path, .. }) = m.dataset {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        }
        if failed {
            break;
        }
    }
    let _ = decode(&data[2..]);
});
