//! The test encoder shared by the walker and scan tests: datasets built by hand
//! in any of the three syntaxes.
#![allow(dead_code)]

use dicom_gateway_dataset::Syntax;

/// Encoder for test inputs. Values are given little endian ("logical")
/// with the width to swap for big endian.
pub struct Enc(pub Syntax);

impl Enc {
    pub fn u16(&self, v: u16) -> [u8; 2] {
        if self.0.is_big() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn u32(&self, v: u32) -> [u8; 4] {
        if self.0.is_big() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn tag(&self, tag: u32) -> Vec<u8> {
        let mut v = self.u16((tag >> 16) as u16).to_vec();
        v.extend(self.u16(tag as u16));
        v
    }
    pub fn header(&self, tag: u32, vr: &str, len: u32) -> Vec<u8> {
        let mut v = self.tag(tag);
        if self.0.is_explicit() {
            v.extend(vr.as_bytes());
            if [
                "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV",
            ]
            .contains(&vr)
            {
                v.extend([0, 0]);
                v.extend(self.u32(len));
            } else {
                v.extend(self.u16(len as u16));
            }
        } else {
            v.extend(self.u32(len));
        }
        v
    }
    /// Element with a value already in the syntax's byte order.
    pub fn raw(&self, tag: u32, vr: &str, value: &[u8]) -> Vec<u8> {
        self.el(tag, vr, value, 0)
    }
    /// Element with a value given little endian; swapped by `width` for big endian.
    pub fn el(&self, tag: u32, vr: &str, value: &[u8], width: usize) -> Vec<u8> {
        let mut v = self.header(tag, vr, value.len() as u32);
        let mut val = value.to_vec();
        if self.0.is_big() && width > 1 && vr != "UN" {
            for c in val.chunks_exact_mut(width) {
                c.reverse();
            }
        }
        v.extend(val);
        v
    }
    pub fn us(&self, tag: u32, x: u16) -> Vec<u8> {
        self.el(tag, "US", &x.to_le_bytes(), 2)
    }
    pub fn text(&self, tag: u32, vr: &str, s: &str) -> Vec<u8> {
        self.el(tag, vr, s.as_bytes(), 0)
    }
    pub fn item(&self, content: &[u8], defined: bool) -> Vec<u8> {
        let mut v = self.tag(0xFFFE_E000);
        if defined {
            v.extend(self.u32(content.len() as u32));
            v.extend(content);
        } else {
            v.extend(self.u32(0xFFFF_FFFF));
            v.extend(content);
            v.extend(self.tag(0xFFFE_E00D));
            v.extend(self.u32(0));
        }
        v
    }
    pub fn sq(&self, tag: u32, items: &[Vec<u8>], defined: bool) -> Vec<u8> {
        let body: Vec<u8> = items.concat();
        let mut v;
        if defined {
            v = self.header(tag, "SQ", body.len() as u32);
            v.extend(body);
        } else {
            v = self.header(tag, "SQ", 0xFFFF_FFFF);
            v.extend(body);
            v.extend(self.tag(0xFFFE_E0DD));
            v.extend(self.u32(0));
        }
        v
    }
}
