//! PDU decode/encode: known byte vectors, every user-information sub-item,
//! round trips (proptest), and every error path.

use dicom_gateway_codec::pdu::{abort_pdu, decode, encode};
use dicom_gateway_codec::{AssociateAc, AssociateRq, CodecError, Pdu, Pdv, PresentationContextAc, PresentationContextRq, UserItem};
use proptest::prelude::*;

fn ae(s: &str) -> [u8; 16] {
    let mut out = [b' '; 16];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

fn rq_full() -> AssociateRq {
    AssociateRq {
        protocol_version: 1,
        called_ae: ae("DICOM_GATEWAY"),
        calling_ae: ae("ECHOSCU"),
        application_context: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![
            PresentationContextRq {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            },
            PresentationContextRq {
                id: 3,
                abstract_syntax: "1.2.840.10008.5.1.4.1.1.128".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2.1".into(), "1.2.840.10008.1.2.2".into(), "1.2.840.10008.1.2".into()],
            },
        ],
        user_items: vec![
            UserItem::MaxLength(16384),
            UserItem::ImplementationClassUid("1.2.276.0.7230010.3.0.3.6.7".into()),
            UserItem::AsyncOpsWindow { invoked: 1, performed: 1 },
            UserItem::RoleSelection { sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(), scu_role: 1, scp_role: 1 },
            UserItem::ImplementationVersionName("OFFIS_DCMTK_367".into()),
            UserItem::SopClassExtended { sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.1".into(), info: vec![1, 0, 1] },
            UserItem::SopClassCommonExtended {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.128".into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_classes: vec!["1.2.840.10008.5.1.4.1.1.130".into(), "1.2.3".into()],
            },
            UserItem::UserIdentityRq { identity_type: 2, positive_response_requested: 1, primary: b"user".to_vec(), secondary: b"secret".to_vec() },
            UserItem::Unknown { item_type: 0x5F, data: vec![9, 9] },
        ],
    }
}

fn enc(pdu: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    encode(pdu, &mut out);
    out
}

#[test]
fn associate_rq_with_every_sub_item_round_trips() {
    let pdu = Pdu::AssociateRq(rq_full());
    let bytes = enc(&pdu);
    assert_eq!(bytes[0], 0x01);
    assert_eq!(u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize, bytes.len() - 6);
    assert_eq!(decode(&bytes).unwrap(), pdu);
}

#[test]
fn associate_ac_round_trips_with_rejected_context() {
    let ac = AssociateAc {
        protocol_version: 1,
        called_ae: ae("DICOM_GATEWAY"),
        calling_ae: ae("ECHOSCU"),
        application_context: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![
            PresentationContextAc { id: 1, result: 0, transfer_syntax: "1.2.840.10008.1.2".into() },
            PresentationContextAc { id: 3, result: 3, transfer_syntax: String::new() },
        ],
        user_items: vec![UserItem::MaxLength(0), UserItem::UserIdentityAc { server_response: b"ok".to_vec() }],
    };
    let pdu = Pdu::AssociateAc(ac);
    assert_eq!(decode(&enc(&pdu)).unwrap(), pdu);
}

#[test]
fn known_bytes_of_fixed_pdus() {
    assert_eq!(enc(&Pdu::ReleaseRq), [5, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    assert_eq!(enc(&Pdu::ReleaseRp), [6, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    assert_eq!(enc(&Pdu::AssociateRj { result: 1, source: 1, reason: 7 }), [3, 0, 0, 0, 0, 4, 0, 1, 1, 7]);
    assert_eq!(abort_pdu(6), [7, 0, 0, 0, 0, 4, 0, 0, 2, 6]);
    assert_eq!(decode(&abort_pdu(1)).unwrap(), Pdu::Abort { source: 2, reason: 1 });
    let pdata = Pdu::PData(vec![Pdv { context_id: 1, control: 3, data: vec![0xAA, 0xBB] }]);
    assert_eq!(enc(&pdata), [4, 0, 0, 0, 0, 8, 0, 0, 0, 4, 1, 3, 0xAA, 0xBB]);
}

#[test]
fn uid_padding_is_trimmed() {
    let mut bytes = enc(&Pdu::AssociateRq(rq_full()));
    // Application context item at 74: make its value end in a NUL pad.
    let len = u16::from_be_bytes([bytes[76], bytes[77]]) as usize;
    assert_eq!(&bytes[78..78 + len], b"1.2.840.10008.3.1.1.1");
    bytes[78 + len - 1] = 0; // "1.2.840.10008.3.1.1." + NUL -> still parses (trailing pad dropped)
    match decode(&bytes).unwrap() {
        Pdu::AssociateRq(rq) => assert_eq!(rq.application_context, "1.2.840.10008.3.1.1."),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_paths_have_the_right_abort_reasons() {
    let good = enc(&Pdu::AssociateRq(rq_full()));
    // truncated header
    assert!(matches!(decode(&good[..3]), Err(CodecError::Truncated { .. })));
    // length field disagrees with the bytes
    assert!(matches!(decode(&good[..good.len() - 1]), Err(CodecError::BadPduLength { .. })));
    // unknown type
    let e = decode(&[9, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(e.abort_reason(), 1);
    // bad item length: application context item claims 0xFFF0 bytes
    let mut bad = good.clone();
    bad[76] = 0xFF;
    bad[77] = 0xF0;
    let e = decode(&bad).unwrap_err();
    assert!(matches!(e, CodecError::BadItemLength { item: 0x10, .. }), "{e:?}");
    assert_eq!(e.abort_reason(), 6);
    // even presentation context id
    let mut rq = rq_full();
    rq.presentation_contexts[0].id = 2;
    assert!(matches!(decode(&enc(&Pdu::AssociateRq(rq))), Err(CodecError::BadContextId(2))));
    // missing presentation context
    let mut rq = rq_full();
    rq.presentation_contexts.clear();
    assert!(matches!(decode(&enc(&Pdu::AssociateRq(rq))), Err(CodecError::MissingItem(_))));
    // wrong fixed length
    assert!(matches!(decode(&[5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0]), Err(CodecError::BadPduLength { .. })));
    // PDV item longer than the PDU
    let e = decode(&[4, 0, 0, 0, 0, 6, 0, 0, 3, 0xE8, 1, 3]).unwrap_err();
    assert!(matches!(e, CodecError::BadPdvLength { .. }));
    // unknown top-level item in an A-ASSOCIATE-RQ
    let mut with_junk = good.clone();
    with_junk.extend_from_slice(&[0x77, 0, 0, 0]);
    let n = (with_junk.len() - 6) as u32;
    with_junk[2..6].copy_from_slice(&n.to_be_bytes());
    assert_eq!(decode(&with_junk).unwrap_err().abort_reason(), 4);
}

#[test]
fn every_prefix_and_byte_flip_is_an_error_or_a_pdu_never_a_panic() {
    let good = enc(&Pdu::AssociateRq(rq_full()));
    for cut in 0..good.len() {
        let _ = decode(&good[..cut]);
    }
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut b = good.clone();
            b[i] ^= flip;
            let _ = decode(&b);
        }
    }
}

fn uid_strategy() -> impl Strategy<Value = String> {
    "[1-9][0-9]{0,5}(\\.[0-9]{1,6}){1,8}"
}

fn ae_strategy() -> impl Strategy<Value = [u8; 16]> {
    proptest::array::uniform16(0x20u8..0x7F)
}

fn user_item_strategy() -> impl Strategy<Value = UserItem> {
    prop_oneof![
        any::<u32>().prop_map(UserItem::MaxLength),
        uid_strategy().prop_map(UserItem::ImplementationClassUid),
        (any::<u16>(), any::<u16>()).prop_map(|(invoked, performed)| UserItem::AsyncOpsWindow { invoked, performed }),
        (uid_strategy(), 0u8..2, 0u8..2).prop_map(|(sop_class_uid, scu_role, scp_role)| UserItem::RoleSelection { sop_class_uid, scu_role, scp_role }),
        "[A-Z0-9_]{1,16}".prop_map(UserItem::ImplementationVersionName),
        (uid_strategy(), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(sop_class_uid, info)| UserItem::SopClassExtended { sop_class_uid, info }),
        (uid_strategy(), uid_strategy(), proptest::collection::vec(uid_strategy(), 0..3)).prop_map(|(a, b, c)| UserItem::SopClassCommonExtended { sop_class_uid: a, service_class_uid: b, related_general_sop_classes: c }),
        (1u8..6, 0u8..2, proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(t, p, a, b)| UserItem::UserIdentityRq { identity_type: t, positive_response_requested: p, primary: a, secondary: b }),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|server_response| UserItem::UserIdentityAc { server_response }),
    ]
}

proptest! {
    #[test]
    fn associate_rq_round_trip(
        called in ae_strategy(), calling in ae_strategy(), app in uid_strategy(),
        contexts in proptest::collection::vec((0u8..128, uid_strategy(), proptest::collection::vec(uid_strategy(), 1..4)), 1..6),
        items in proptest::collection::vec(user_item_strategy(), 0..8),
    ) {
        let rq = AssociateRq {
            protocol_version: 1, called_ae: called, calling_ae: calling, application_context: app,
            presentation_contexts: contexts.into_iter().map(|(id, a, t)| PresentationContextRq { id: id * 2 + 1, abstract_syntax: a, transfer_syntaxes: t }).collect(),
            user_items: items,
        };
        let pdu = Pdu::AssociateRq(rq);
        prop_assert_eq!(decode(&enc(&pdu)).unwrap(), pdu);
    }

    #[test]
    fn pdata_round_trip(pdvs in proptest::collection::vec((0u8..128, 0u8..4, proptest::collection::vec(any::<u8>(), 0..300)), 1..5)) {
        let pdu = Pdu::PData(pdvs.into_iter().map(|(c, ctl, data)| Pdv { context_id: c * 2 + 1, control: ctl, data }).collect());
        prop_assert_eq!(decode(&enc(&pdu)).unwrap(), pdu);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
    }
}
