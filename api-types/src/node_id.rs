//! The identity of a node on the LAN, as it appears in settings, peers and user ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node id: a ULID in its canonical 26-character Crockford base32 form, generated once
/// per installation. Stored upper-case; lower-case input is accepted and normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

pub const NODE_ID_LEN: usize = 26;
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeIdError {
    Length(usize),
    Character(char),
    Overflow,
}

impl fmt::Display for NodeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeIdError::Length(n) => {
                write!(f, "a node id has {NODE_ID_LEN} characters, not {n}")
            }
            NodeIdError::Character(c) => write!(f, "'{c}' cannot appear in a node id"),
            NodeIdError::Overflow => write!(f, "node id is out of range"),
        }
    }
}

impl std::error::Error for NodeIdError {}

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 128 bits the id stands for: a fixed-size key, without an allocation, for
    /// tables that hold thousands of ids.
    pub fn to_bits(&self) -> u128 {
        // 26 digits of 5 bits; the first is at most 7 (checked at parse), so nothing
        // is shifted out.
        self.0.bytes().fold(0u128, |bits, c| {
            let digit = CROCKFORD.iter().position(|d| *d == c).unwrap_or(0);
            (bits << 5) | digit as u128
        })
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let len = upper.chars().count();
        if len != NODE_ID_LEN {
            return Err(NodeIdError::Length(len));
        }
        if let Some(bad) = upper
            .chars()
            .find(|c| !CROCKFORD.contains(&(*c as u8)) || !c.is_ascii())
        {
            return Err(NodeIdError::Character(bad));
        }
        // 26 base32 digits carry 130 bits; a ULID has 128, so the first digit is at most 7.
        if upper.as_bytes()[0] > b'7' {
            return Err(NodeIdError::Overflow);
        }
        Ok(NodeId(upper))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ulids_and_normalises_case() {
        let id: NodeId = "01arz3ndektsv4rrffq69g5fav".parse().unwrap();
        assert_eq!(id.as_str(), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    }

    #[test]
    fn the_bits_are_the_ulid() {
        let id: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        assert_eq!(id.to_bits(), 0x0156_3E3A_B5D3_D676_4C61_EFB9_9302_BD5B);
        let max: NodeId = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse().unwrap();
        assert_eq!(max.to_bits(), u128::MAX);
        let zero: NodeId = "00000000000000000000000000".parse().unwrap();
        assert_eq!(zero.to_bits(), 0);
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!("short".parse::<NodeId>(), Err(NodeIdError::Length(5)));
        assert_eq!(
            "01ARZ3NDEKTSV4RRFFQ69G5FAU".parse::<NodeId>(),
            Err(NodeIdError::Character('U'))
        );
        assert_eq!(
            "81ARZ3NDEKTSV4RRFFQ69G5FAV".parse::<NodeId>(),
            Err(NodeIdError::Overflow)
        );
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FA界".parse::<NodeId>().is_err());
    }
}
