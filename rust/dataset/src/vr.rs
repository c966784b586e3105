//! Value representations (PS3.5 6.2) and how they are encoded.

/// A value representation. The four `…Or…` variants only come out of the
/// dictionary (implicit VR); they are resolved from the dataset's context
/// (Bits Allocated, Pixel Representation) before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vr {
    Ae,
    As,
    At,
    Cs,
    Da,
    Ds,
    Dt,
    Fl,
    Fd,
    Is,
    Lo,
    Lt,
    Ob,
    Od,
    Of,
    Ol,
    Ov,
    Ow,
    Pn,
    Sh,
    Sl,
    Sq,
    Ss,
    St,
    Sv,
    Tm,
    Uc,
    Ui,
    Ul,
    Un,
    Ur,
    Us,
    Ut,
    Uv,
    /// Dictionary only: "US or SS" (by Pixel Representation).
    UsOrSs,
    /// Dictionary only: "OB or OW" (pixel data by Bits Allocated).
    ObOrOw,
    /// Dictionary only: "US or SS or OW" (LUT Data).
    UsOrSsOrOw,
    /// Dictionary only: "US or OW".
    UsOrOw,
}

impl Vr {
    /// Parse the two VR bytes of an explicit VR element.
    pub fn from_bytes(b: [u8; 2]) -> Option<Vr> {
        use Vr::*;
        Some(match &b {
            b"AE" => Ae,
            b"AS" => As,
            b"AT" => At,
            b"CS" => Cs,
            b"DA" => Da,
            b"DS" => Ds,
            b"DT" => Dt,
            b"FL" => Fl,
            b"FD" => Fd,
            b"IS" => Is,
            b"LO" => Lo,
            b"LT" => Lt,
            b"OB" => Ob,
            b"OD" => Od,
            b"OF" => Of,
            b"OL" => Ol,
            b"OV" => Ov,
            b"OW" => Ow,
            b"PN" => Pn,
            b"SH" => Sh,
            b"SL" => Sl,
            b"SQ" => Sq,
            b"SS" => Ss,
            b"ST" => St,
            b"SV" => Sv,
            b"TM" => Tm,
            b"UC" => Uc,
            b"UI" => Ui,
            b"UL" => Ul,
            b"UN" => Un,
            b"UR" => Ur,
            b"US" => Us,
            b"UT" => Ut,
            b"UV" => Uv,
            _ => return None,
        })
    }

    /// The two bytes written in explicit VR. Ambiguous VRs must be resolved first;
    /// they fall back to the byte-safe choice.
    pub fn to_bytes(self) -> [u8; 2] {
        use Vr::*;
        *match self {
            Ae => b"AE",
            As => b"AS",
            At => b"AT",
            Cs => b"CS",
            Da => b"DA",
            Ds => b"DS",
            Dt => b"DT",
            Fl => b"FL",
            Fd => b"FD",
            Is => b"IS",
            Lo => b"LO",
            Lt => b"LT",
            Ob => b"OB",
            Od => b"OD",
            Of => b"OF",
            Ol => b"OL",
            Ov => b"OV",
            Ow => b"OW",
            Pn => b"PN",
            Sh => b"SH",
            Sl => b"SL",
            Sq => b"SQ",
            Ss => b"SS",
            St => b"ST",
            Sv => b"SV",
            Tm => b"TM",
            Uc => b"UC",
            Ui => b"UI",
            Ul => b"UL",
            Un => b"UN",
            Ur => b"UR",
            Us => b"US",
            Ut => b"UT",
            Uv => b"UV",
            UsOrSs => b"US",
            ObOrOw | UsOrSsOrOw | UsOrOw => b"OW",
        }
    }

    /// Explicit VR with a 2-byte reserved field and a 32-bit length (PS3.5 7.1.2).
    pub fn has_long_length(self) -> bool {
        use Vr::*;
        matches!(
            self,
            Ob | Od
                | Of
                | Ol
                | Ov
                | Ow
                | Sq
                | Sv
                | Uc
                | Un
                | Ur
                | Ut
                | Uv
                | ObOrOw
                | UsOrSsOrOw
                | UsOrOw
        )
    }

    /// Width in bytes of the numbers a value of this VR holds, for byte
    /// swapping; 0 for byte strings (text, OB, UN, SQ).
    pub fn swap_width(self) -> usize {
        use Vr::*;
        match self {
            Us | Ss | Ow | At | UsOrSs | UsOrSsOrOw | UsOrOw => 2,
            Ul | Sl | Fl | Of | Ol => 4,
            Fd | Od | Ov | Sv | Uv => 8,
            _ => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vr::UsOrSs => "US or SS",
            Vr::ObOrOw => "OB or OW",
            Vr::UsOrSsOrOw => "US or SS or OW",
            Vr::UsOrOw => "US or OW",
            v => {
                let b = v.to_bytes();
                VR_NAMES
                    .iter()
                    .find(|n| n.as_bytes() == b)
                    .copied()
                    .unwrap_or("??")
            }
        }
    }
}

static VR_NAMES: [&str; 34] = [
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
    "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
    "UT", "UV",
];
