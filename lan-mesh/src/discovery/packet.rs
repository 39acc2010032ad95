//! The discovery packet codec: pure, no I/O. `docs/PROTOCOL.md` is the byte-level spec;
//! this file must stay in step with it.
//!
//! Decoding checks the cheap things first (size, magic, declared length, version) so
//! that garbage costs almost nothing, and returns the exact signed byte range so the
//! tag is verified over the bytes that travelled, never over a re-serialisation.

use std::fmt;

use api_types::{NodeId, Presence};
use thiserror::Error;

use super::auth::{DiscoveryKey, TAG_LEN};

/// `LNCH`: lets a receiver drop stray traffic on the port after four bytes.
pub const MAGIC: [u8; 4] = *b"LNCH";
/// 2 since the shared secret's keys come from Argon2id and links speak XXpsk0
/// (docs/PROTOCOL.md, "Compatibility"): a node of version 1 and one of version 2 count
/// each other's packets as `unsupported_version`, never as a bad tag.
pub const VERSION: u8 = 2;
/// Below the smallest common path MTU (1280 for IPv6, ~1400 with VPN overhead), so a
/// packet never fragments; fragments are what lossy office Wi-Fi drops first.
pub const MAX_PACKET_LEN: usize = 1200;
/// Room for 64 display-name characters of up to 4 UTF-8 bytes each.
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_NAME_CHARS: usize = 64;

const HEADER_LEN: usize = 10;
/// node_id 16 + instance_id 8 + ts 8 + nonce 16 + listen_port 2.
const FIXED_BODY_LEN: usize = 50;
pub const MIN_PACKET_LEN: usize = HEADER_LEN + FIXED_BODY_LEN + 2 + 2;

const FLAG_TAGGED: u8 = 0b0000_0001;
const EXT_PUBLIC_KEY: u8 = 1;
pub const PUBLIC_KEY_LEN: usize = 32;
const EXT_SEQ: u8 = 2;
const SEQ_LEN: usize = 8;
const EXT_PRESENCE: u8 = 3;
const PRESENCE_LEN: usize = 1;

/// A presence's code in extension 3. `Offline` is never announced (a node that sends
/// is online); a code this build does not know reads as `Online`, so a later version
/// may add states without older nodes dropping its packets.
fn presence_code(p: Presence) -> u8 {
    match p {
        Presence::Online | Presence::Offline => 0,
        Presence::Away => 1,
        Presence::Busy => 2,
    }
}

fn presence_from_code(code: u8) -> Presence {
    match code {
        1 => Presence::Away,
        2 => Presence::Busy,
        _ => Presence::Online,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// Sent at start (a few times, broadcast is lossy); receivers answer by unicast.
    Hello,
    /// Periodic "still here".
    Heartbeat,
    /// Clean shutdown: receivers mark the sender offline at once.
    Goodbye,
    /// Unicast to a host in a routed subnet or a manually added address; answered.
    Probe,
    /// Unicast reply to `Hello`/`Probe`; never answered, so answers cannot loop.
    Answer,
}

impl PacketKind {
    pub const ALL: [PacketKind; 5] = [
        PacketKind::Hello,
        PacketKind::Heartbeat,
        PacketKind::Goodbye,
        PacketKind::Probe,
        PacketKind::Answer,
    ];

    fn code(self) -> u8 {
        match self {
            PacketKind::Hello => 1,
            PacketKind::Heartbeat => 2,
            PacketKind::Goodbye => 3,
            PacketKind::Probe => 4,
            PacketKind::Answer => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        PacketKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Whether the receiver should answer with a unicast `Answer`.
    pub fn wants_answer(self) -> bool {
        matches!(self, PacketKind::Hello | PacketKind::Probe)
    }
}

/// Random per process start: a changed instance id means the peer restarted, so its
/// old connections and state are stale even if it never said goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// 128 random bits per packet. Replay checks use the sequence number; the nonce keeps
/// two otherwise identical packets (and their tags) distinct on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub u128);

/// Wall-clock time in milliseconds since the Unix epoch, as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub fn saturating_add_ms(self, ms: u64) -> Self {
        UnixMillis(self.0.saturating_add(ms))
    }
    pub fn saturating_sub_ms(self, ms: u64) -> Self {
        UnixMillis(self.0.saturating_sub(ms))
    }
}

/// The node's long-lived transport public key (Ed25519 size). Not produced yet; the
/// field exists so that adding it later needs no version bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

/// One decoded (or to be encoded) discovery packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: PacketKind,
    pub node_id: NodeId,
    pub instance_id: InstanceId,
    pub ts: UnixMillis,
    pub nonce: Nonce,
    /// The sender's WebSocket (transport) port; its IP is the datagram's source.
    pub listen_port: u16,
    pub display_name: String,
    pub public_key: Option<PublicKey>,
    /// Counts up by one per packet within an instance: what replay protection keys on
    /// (per sender, never against our clock). `None` from senders of an older version.
    pub seq: Option<u64>,
    /// What the sender's user shows (extension 3); `None` from senders of an older
    /// version, which are shown `online`.
    pub presence: Option<Presence>,
}

impl Packet {
    /// What replay protection orders this sender's packets by: its sequence number, or,
    /// from an older sender without one, its timestamp.
    pub fn replay_seq(&self) -> u64 {
        self.seq.unwrap_or(self.ts.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("display name is longer than {MAX_NAME_CHARS} characters or {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    #[error("display name contains control characters")]
    NameHasControl,
    #[error("node id is not a ULID")]
    BadNodeId,
    #[error("listen port 0 cannot be announced")]
    BadPort,
}

/// Why bytes are not a packet. Never shown per packet to anyone: it feeds drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is over the size limit")]
    Oversized(usize),
    #[error("datagram is shorter than a packet header")]
    TooShort,
    #[error("wrong magic")]
    BadMagic,
    #[error("declared length does not match the datagram")]
    LengthMismatch,
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown flags")]
    BadFlags,
    #[error("unknown packet kind {0}")]
    UnknownKind(u8),
    #[error("node id is not a ULID")]
    BadNodeId,
    #[error("listen port 0")]
    BadPort,
    #[error("display name is not valid")]
    BadName,
    #[error("extension area is malformed")]
    BadExtension,
}

/// A decoded packet plus the byte ranges its authenticity depends on.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub packet: Packet,
    /// Everything before the tag: exactly what the sender's HMAC covered.
    pub signed: &'a [u8],
    pub tag: Option<&'a [u8]>,
}

impl Packet {
    /// Serialises the packet; with a key, appends the HMAC-SHA256 tag over all
    /// preceding bytes (header included, so kind/flags/length cannot be altered).
    pub fn encode(&self, key: Option<&DiscoveryKey>) -> Result<Vec<u8>, EncodeError> {
        let name = self.display_name.as_bytes();
        if name.len() > MAX_NAME_BYTES || self.display_name.chars().count() > MAX_NAME_CHARS {
            return Err(EncodeError::NameTooLong);
        }
        if self.display_name.chars().any(char::is_control) {
            return Err(EncodeError::NameHasControl);
        }
        if self.listen_port == 0 {
            return Err(EncodeError::BadPort);
        }
        let node = ulid::Ulid::from_string(self.node_id.as_str())
            .map_err(|_| EncodeError::BadNodeId)?
            .0;
        let mut ext = Vec::new();
        if let Some(PublicKey(pk)) = &self.public_key {
            ext.push(EXT_PUBLIC_KEY);
            ext.extend_from_slice(&(PUBLIC_KEY_LEN as u16).to_be_bytes());
            ext.extend_from_slice(pk);
        }
        if let Some(seq) = self.seq {
            ext.push(EXT_SEQ);
            ext.extend_from_slice(&(SEQ_LEN as u16).to_be_bytes());
            ext.extend_from_slice(&seq.to_be_bytes());
        }
        if let Some(presence) = self.presence {
            ext.push(EXT_PRESENCE);
            ext.extend_from_slice(&(PRESENCE_LEN as u16).to_be_bytes());
            ext.push(presence_code(presence));
        }
        let tag_len = if key.is_some() { TAG_LEN } else { 0 };
        let total = HEADER_LEN + FIXED_BODY_LEN + 2 + name.len() + 2 + ext.len() + tag_len;
        // Name ≤ 256 and three extensions (35 + 11 + 4 bytes) keep this far below the cap; the check
        // guards future extensions.
        let total_u16 = u16::try_from(total).map_err(|_| EncodeError::NameTooLong)?;
        if total > MAX_PACKET_LEN {
            return Err(EncodeError::NameTooLong);
        }

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind.code());
        out.push(if key.is_some() { FLAG_TAGGED } else { 0 });
        out.push(0); // reserved
        out.extend_from_slice(&total_u16.to_be_bytes());
        out.extend_from_slice(&node.to_be_bytes());
        out.extend_from_slice(&self.instance_id.0.to_be_bytes());
        out.extend_from_slice(&self.ts.0.to_be_bytes());
        out.extend_from_slice(&self.nonce.0.to_be_bytes());
        out.extend_from_slice(&self.listen_port.to_be_bytes());
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        out.extend_from_slice(&ext);
        if let Some(key) = key {
            let tag = key.tag(&out);
            out.extend_from_slice(&tag);
        }
        debug_assert_eq!(out.len(), total);
        Ok(out)
    }

    /// Parses a datagram. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, DecodeError> {
        if bytes.len() > MAX_PACKET_LEN {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort);
        }
        if bytes[0..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let declared = usize::from(u16::from_be_bytes([bytes[8], bytes[9]]));
        if declared != bytes.len() {
            return Err(DecodeError::LengthMismatch);
        }
        if bytes[4] != VERSION {
            return Err(DecodeError::UnsupportedVersion(bytes[4]));
        }
        if bytes.len() < MIN_PACKET_LEN {
            return Err(DecodeError::TooShort);
        }
        let kind = PacketKind::from_code(bytes[5]).ok_or(DecodeError::UnknownKind(bytes[5]))?;
        let flags = bytes[6];
        if flags & !FLAG_TAGGED != 0 || bytes[7] != 0 {
            return Err(DecodeError::BadFlags);
        }
        let (signed, tag) = if flags & FLAG_TAGGED != 0 {
            let split = bytes
                .len()
                .checked_sub(TAG_LEN)
                .filter(|s| *s >= MIN_PACKET_LEN)
                .ok_or(DecodeError::TooShort)?;
            (&bytes[..split], Some(&bytes[split..]))
        } else {
            (bytes, None)
        };

        let mut r = Reader {
            buf: &signed[HEADER_LEN..],
        };
        let node = r.u128().ok_or(DecodeError::TooShort)?;
        let node_id: NodeId = ulid::Ulid(node)
            .to_string()
            .parse()
            .map_err(|_| DecodeError::BadNodeId)?;
        let instance_id = InstanceId(r.u64().ok_or(DecodeError::TooShort)?);
        let ts = UnixMillis(r.u64().ok_or(DecodeError::TooShort)?);
        let nonce = Nonce(r.u128().ok_or(DecodeError::TooShort)?);
        let listen_port = r.u16().ok_or(DecodeError::TooShort)?;
        if listen_port == 0 {
            // A peer nobody can connect to; listing it would only produce failed dials.
            return Err(DecodeError::BadPort);
        }
        let name_len = usize::from(r.u16().ok_or(DecodeError::TooShort)?);
        if name_len > MAX_NAME_BYTES {
            return Err(DecodeError::BadName);
        }
        let name = r.take(name_len).ok_or(DecodeError::BadName)?;
        let display_name = std::str::from_utf8(name).map_err(|_| DecodeError::BadName)?;
        if display_name.chars().count() > MAX_NAME_CHARS
            || display_name.chars().any(char::is_control)
        {
            return Err(DecodeError::BadName);
        }
        let ext_len = usize::from(r.u16().ok_or(DecodeError::BadExtension)?);
        let mut ext = Reader {
            buf: r.take(ext_len).ok_or(DecodeError::BadExtension)?,
        };
        if !r.buf.is_empty() {
            // Bytes between the extensions and the tag would be unauthenticated-looking
            // padding a sender never writes; refuse rather than ignore.
            return Err(DecodeError::BadExtension);
        }
        let mut public_key = None;
        let mut seq = None;
        let mut presence = None;
        while !ext.buf.is_empty() {
            let ty = ext.u8().ok_or(DecodeError::BadExtension)?;
            let len = usize::from(ext.u16().ok_or(DecodeError::BadExtension)?);
            let value = ext.take(len).ok_or(DecodeError::BadExtension)?;
            // Unknown extensions are skipped: newer peers may add fields without a
            // version bump, and the tag still covers them.
            if ty == EXT_PUBLIC_KEY {
                let pk: [u8; PUBLIC_KEY_LEN] =
                    value.try_into().map_err(|_| DecodeError::BadExtension)?;
                if public_key.replace(PublicKey(pk)).is_some() {
                    return Err(DecodeError::BadExtension);
                }
            } else if ty == EXT_SEQ {
                let raw: [u8; SEQ_LEN] = value.try_into().map_err(|_| DecodeError::BadExtension)?;
                if seq.replace(u64::from_be_bytes(raw)).is_some() {
                    return Err(DecodeError::BadExtension);
                }
            } else if ty == EXT_PRESENCE {
                let [code]: [u8; PRESENCE_LEN] =
                    value.try_into().map_err(|_| DecodeError::BadExtension)?;
                if presence.replace(presence_from_code(code)).is_some() {
                    return Err(DecodeError::BadExtension);
                }
            }
        }
        Ok(Decoded {
            packet: Packet {
                kind,
                node_id,
                instance_id,
                ts,
                nonce,
                listen_port,
                display_name: display_name.to_string(),
                public_key,
                seq,
                presence,
            },
            signed,
            tag,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
    fn u128(&mut self) -> Option<u128> {
        self.array().map(u128::from_be_bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn node(n: u128) -> NodeId {
        ulid::Ulid(n).to_string().parse().unwrap()
    }

    pub(crate) fn sample(kind: PacketKind) -> Packet {
        Packet {
            kind,
            node_id: node(42),
            instance_id: InstanceId(7),
            ts: UnixMillis(1_700_000_000_000),
            nonce: Nonce(99),
            listen_port: 19123,
            display_name: "张三 laptop".into(),
            public_key: None,
            seq: None,
            presence: None,
        }
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        (
            prop::sample::select(PacketKind::ALL.to_vec()),
            any::<u128>(),
            any::<u64>(),
            any::<u64>(),
            any::<u128>(),
            1..=u16::MAX,
            "[^\\p{Cc}]{0,64}",
            prop::option::of(any::<[u8; 32]>()),
            prop::option::of(any::<u64>()),
            prop::option::of(prop::sample::select(vec![
                Presence::Online,
                Presence::Away,
                Presence::Busy,
            ])),
        )
            .prop_map(
                |(kind, n, i, ts, nonce, port, name, pk, seq, presence)| Packet {
                    kind,
                    node_id: node(n),
                    instance_id: InstanceId(i),
                    ts: UnixMillis(ts),
                    nonce: Nonce(nonce),
                    listen_port: port,
                    display_name: name,
                    public_key: pk.map(PublicKey),
                    seq,
                    presence,
                },
            )
    }

    #[test]
    fn presence_rides_in_extension_3_and_unknown_codes_read_as_online() {
        let mut p = sample(PacketKind::Heartbeat);
        p.presence = Some(Presence::Busy);
        let with = p.encode(None).unwrap();
        let without = sample(PacketKind::Heartbeat).encode(None).unwrap();
        // Four bytes: type, length (2), code.
        assert_eq!(with.len(), without.len() + 4);
        assert_eq!(&with[with.len() - 4..], &[EXT_PRESENCE, 0, 1, 2]);
        assert_eq!(
            Packet::decode(&with).unwrap().packet.presence,
            Some(Presence::Busy)
        );
        // An older sender: no extension, no presence (shown online).
        assert_eq!(Packet::decode(&without).unwrap().packet.presence, None);
        // A later version's state this build does not know: online, not malformed.
        let mut future = with.clone();
        let last = future.len() - 1;
        future[last] = 9;
        assert_eq!(
            Packet::decode(&future).unwrap().packet.presence,
            Some(Presence::Online)
        );
        // Twice, or with the wrong length: malformed.
        let mut twice = without.clone();
        let ext_at = twice.len() - 2;
        twice.truncate(ext_at);
        twice.extend_from_slice(&8u16.to_be_bytes());
        twice.extend_from_slice(&[EXT_PRESENCE, 0, 1, 1, EXT_PRESENCE, 0, 1, 2]);
        let len = twice.len() as u16;
        twice[8..10].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Packet::decode(&twice).unwrap_err(),
            DecodeError::BadExtension
        );
    }

    #[test]
    fn an_older_decoder_skips_the_presence_extension() {
        // What an older node does with extension 3: an unknown type, skipped. Decoding
        // with the type renumbered to one nobody knows stands in for that node.
        let mut p = sample(PacketKind::Hello);
        p.presence = Some(Presence::Away);
        let mut bytes = p.encode(None).unwrap();
        let at = bytes.len() - 4;
        bytes[at] = 200;
        let decoded = Packet::decode(&bytes).unwrap().packet;
        assert_eq!(decoded.presence, None);
        assert_eq!(decoded.display_name, p.display_name);
    }

    #[test]
    fn layout_matches_the_spec() {
        let bytes = sample(PacketKind::Hello).encode(None).unwrap();
        assert_eq!(&bytes[0..4], b"LNCH");
        assert_eq!(bytes[4], 2);
        assert_eq!(bytes[5], 1);
        assert_eq!(bytes[6], 0);
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[8], bytes[9]])),
            bytes.len()
        );
        assert_eq!(bytes.len(), MIN_PACKET_LEN + "张三 laptop".len());
        let key = DiscoveryKey::from_bytes([7; 32]);
        let signed = sample(PacketKind::Hello).encode(Some(&key)).unwrap();
        assert_eq!(signed.len(), bytes.len() + TAG_LEN);
        assert_eq!(signed[6], FLAG_TAGGED);
    }

    #[test]
    fn decode_returns_the_signed_range() {
        let key = DiscoveryKey::from_bytes([7; 32]);
        let bytes = sample(PacketKind::Probe).encode(Some(&key)).unwrap();
        let d = Packet::decode(&bytes).unwrap();
        assert_eq!(d.signed, &bytes[..bytes.len() - TAG_LEN]);
        assert!(key.verify(d.signed, d.tag.unwrap()));
    }

    #[test]
    fn structural_errors_are_named() {
        let good = sample(PacketKind::Heartbeat).encode(None).unwrap();
        assert_eq!(
            Packet::decode(&vec![0; MAX_PACKET_LEN + 1]).unwrap_err(),
            DecodeError::Oversized(MAX_PACKET_LEN + 1)
        );
        assert_eq!(Packet::decode(b"LNC").unwrap_err(), DecodeError::TooShort);
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::BadMagic);
        let mut b = good.clone();
        b.push(0);
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::LengthMismatch);
        // Version 1 (HMAC-derived keys, XXpsk3 links) and a later version alike.
        for version in [1, 3] {
            let mut b = good.clone();
            b[4] = version;
            assert_eq!(
                Packet::decode(&b).unwrap_err(),
                DecodeError::UnsupportedVersion(version)
            );
        }
        let mut b = good.clone();
        b[5] = 9;
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::UnknownKind(9));
        let mut b = good.clone();
        b[6] = 0x80;
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::BadFlags);
        // A node id whose first base32 digit would exceed 7 cannot come from 128 bits,
        // so every 128-bit value is a valid id; the name is the next thing to break.
        let mut b = good.clone();
        b[HEADER_LEN + 48..HEADER_LEN + 50].copy_from_slice(&[0, 0]);
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::BadPort);
        let mut b = good.clone();
        b[HEADER_LEN + FIXED_BODY_LEN + 2] = 0x07; // BEL inside the name
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::BadName);
    }

    #[test]
    fn overlong_names_are_refused_on_both_sides() {
        let mut p = sample(PacketKind::Hello);
        p.display_name = "x".repeat(65);
        assert_eq!(p.encode(None).unwrap_err(), EncodeError::NameTooLong);
        p.display_name = "a\nb".into();
        assert_eq!(p.encode(None).unwrap_err(), EncodeError::NameHasControl);
        p.display_name = "界".repeat(64);
        assert!(p.encode(None).is_ok());
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let p = sample(PacketKind::Hello);
        let mut bytes = p.encode(None).unwrap();
        // Rewrite the empty extension area as one unknown 3-byte extension.
        let ext_at = bytes.len() - 2;
        bytes.truncate(ext_at);
        bytes.extend_from_slice(&6u16.to_be_bytes());
        bytes.extend_from_slice(&[200, 0, 3, 1, 2, 3]);
        let len = bytes.len() as u16;
        bytes[8..10].copy_from_slice(&len.to_be_bytes());
        assert_eq!(Packet::decode(&bytes).unwrap().packet, p);
        // ... but a public key of the wrong size is malformed.
        bytes[ext_at + 2] = EXT_PUBLIC_KEY;
        assert_eq!(
            Packet::decode(&bytes).unwrap_err(),
            DecodeError::BadExtension
        );
    }

    #[test]
    fn the_sequence_number_travels_in_its_extension() {
        let mut p = sample(PacketKind::Heartbeat);
        let without = p.encode(None).unwrap();
        p.seq = Some(0x0102_0304_0506_0708);
        let with = p.encode(None).unwrap();
        assert_eq!(with.len(), without.len() + 11);
        assert_eq!(&with[with.len() - 11..with.len() - 8], &[EXT_SEQ, 0, 8]);
        assert_eq!(
            Packet::decode(&with).unwrap().packet.replay_seq(),
            0x0102_0304_0506_0708
        );
        // An older sender's packet: the timestamp stands in.
        assert_eq!(
            Packet::decode(&without).unwrap().packet.replay_seq(),
            p.ts.0
        );
    }

    proptest! {
        #[test]
        fn round_trip(p in arb_packet(), key in prop::option::of(any::<[u8; 32]>())) {
            let key = key.map(DiscoveryKey::from_bytes);
            let bytes = p.encode(key.as_ref()).unwrap();
            prop_assert!(bytes.len() <= MAX_PACKET_LEN);
            let d = Packet::decode(&bytes).unwrap();
            prop_assert_eq!(&d.packet, &p);
            prop_assert_eq!(d.tag.is_some(), key.is_some());
        }

        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1400)) {
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn bytes_behind_a_valid_header_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..400), kind in 0u8..8, flags in 0u8..2,
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&[VERSION, kind, flags, 0]);
            let len = (HEADER_LEN + body.len()) as u16;
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&body);
            let _ = Packet::decode(&bytes);
        }
    }
}
