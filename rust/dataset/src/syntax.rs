//! The three uncompressed transfer syntaxes (STO-2).

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syntax {
    /// Implicit VR Little Endian, 1.2.840.10008.1.2
    ImplicitLittle,
    /// Explicit VR Little Endian, 1.2.840.10008.1.2.1
    ExplicitLittle,
    /// Explicit VR Big Endian (retired), 1.2.840.10008.1.2.2
    ExplicitBig,
}

pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

impl Syntax {
    pub const ALL: [Syntax; 3] = [
        Syntax::ImplicitLittle,
        Syntax::ExplicitLittle,
        Syntax::ExplicitBig,
    ];

    pub fn uid(self) -> &'static str {
        match self {
            Syntax::ImplicitLittle => IMPLICIT_LE,
            Syntax::ExplicitLittle => EXPLICIT_LE,
            Syntax::ExplicitBig => EXPLICIT_BE,
        }
    }

    /// Short name used by the CLI and the corpus: implicit, explicit-le, explicit-be.
    pub fn name(self) -> &'static str {
        match self {
            Syntax::ImplicitLittle => "implicit",
            Syntax::ExplicitLittle => "explicit-le",
            Syntax::ExplicitBig => "explicit-be",
        }
    }

    pub fn is_explicit(self) -> bool {
        self != Syntax::ImplicitLittle
    }

    pub fn is_big(self) -> bool {
        self == Syntax::ExplicitBig
    }

    /// Accepts the short names and the UIDs (UID padding trimmed).
    pub fn parse(s: &str) -> Result<Syntax, Error> {
        let t = s.trim_matches(|c: char| c == '\0' || c == ' ');
        Ok(match t.to_ascii_lowercase().as_str() {
            "implicit" | "implicit-le" | IMPLICIT_LE => Syntax::ImplicitLittle,
            "explicit" | "explicit-le" | EXPLICIT_LE => Syntax::ExplicitLittle,
            "explicit-be" | EXPLICIT_BE => Syntax::ExplicitBig,
            _ => return Err(Error::UnknownSyntax(s.to_string())),
        })
    }
}
