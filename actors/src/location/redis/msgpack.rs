//! A reader for the MessagePack subset that Redis's Lua `cmsgpack.pack` writes for our stored
//! values: arrays, byte strings (`str`/`bin`), integers (and integral doubles), nil.
//!
//! Stored AOR values are MessagePack so that the scripts decode them with one C call
//! (`cmsgpack.unpack`) instead of Lua string scanning, which measured about 5 µs per binding
//! (docs/PERFORMANCE.md). Every read is bounds-checked: a malformed value is an error, never a
//! panic or an allocation sized by untrusted input.

use bytes::Bytes;

/// Why a value is not the MessagePack we expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// The value ends in the middle of an item.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// An item of another type than expected starts here.
    #[error("unexpected type 0x{tag:02x} at byte {at}")]
    Type {
        /// The type byte found.
        tag: u8,
        /// Its position.
        at: usize,
    },
}

/// A cursor over one MessagePack value.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a Bytes) -> Self {
        Self { data, pos: 0 }
    }

    /// Whether everything was read.
    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> Result<u8, MsgpackError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(MsgpackError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn be(&mut self, n: usize) -> Result<u64, MsgpackError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(MsgpackError::Truncated(self.pos))?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or(MsgpackError::Truncated(self.pos))?;
        self.pos = end;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, MsgpackError> {
        usize::try_from(self.be(n)?).map_err(|_| MsgpackError::Truncated(self.pos))
    }

    /// The length of an array.
    pub(super) fn array(&mut self) -> Result<usize, MsgpackError> {
        let at = self.pos;
        match self.byte()? {
            tag @ 0x90..=0x9f => Ok(usize::from(tag & 0x0f)),
            0xdc => self.len(2),
            0xdd => self.len(4),
            tag => Err(MsgpackError::Type { tag, at }),
        }
    }

    /// A byte string (`str` or `bin`), sharing the value's buffer.
    pub(super) fn bytes(&mut self) -> Result<Bytes, MsgpackError> {
        let at = self.pos;
        let len = match self.byte()? {
            tag @ 0xa0..=0xbf => usize::from(tag & 0x1f),
            0xd9 | 0xc4 => self.len(1)?,
            0xda | 0xc5 => self.len(2)?,
            0xdb | 0xc6 => self.len(4)?,
            tag => return Err(MsgpackError::Type { tag, at }),
        };
        let end = self
            .pos
            .checked_add(len)
            .ok_or(MsgpackError::Truncated(at))?;
        if end > self.data.len() {
            return Err(MsgpackError::Truncated(at));
        }
        let out = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    /// A non-negative integer (Lua numbers are doubles: an integral double is accepted).
    pub(super) fn uint(&mut self) -> Result<u64, MsgpackError> {
        let at = self.pos;
        let tag = self.byte()?;
        match tag {
            0x00..=0x7f => Ok(u64::from(tag)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0..=0xd3 => {
                let n = 1usize << (tag - 0xd0);
                let raw = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                // Sign-extend, then refuse negatives.
                let v = ((raw << shift) as i64) >> shift;
                u64::try_from(v).map_err(|_| MsgpackError::Type { tag, at })
            }
            0xcb => {
                let f = f64::from_bits(self.be(8)?);
                if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(f as u64)
                } else {
                    Err(MsgpackError::Type { tag, at })
                }
            }
            _ => Err(MsgpackError::Type { tag, at }),
        }
    }
}

/// A writer for the same subset that writes each item in the form `cmsgpack.pack` chooses
/// (the shortest one): a binding the node encodes is byte for byte what the scripts would store
/// for it, which the scripts' refresh fast path relies on (docs/REDIS.md, "Script cost").
pub(super) mod write {
    /// Appends an array header (`fixarray`, `array 16`, `array 32`).
    pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
        if len < 16 {
            out.push(0x90 | len as u8);
        } else if let Ok(n) = u16::try_from(len) {
            out.push(0xdc);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(0xdd);
            out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
    }

    /// Appends a byte string as a MessagePack `str` (`fixstr`, `str 8`, `str 16`, `str 32`).
    pub(crate) fn bytes(out: &mut Vec<u8>, v: &[u8]) {
        let len = v.len();
        if len < 32 {
            out.push(0xa0 | len as u8);
        } else if let Ok(n) = u8::try_from(len) {
            out.extend_from_slice(&[0xd9, n]);
        } else if let Ok(n) = u16::try_from(len) {
            out.push(0xda);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
        out.extend_from_slice(v);
    }

    /// Appends an unsigned integer (`positive fixint`, `uint 8/16/32/64`).
    pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 0x80 {
            out.push(v as u8);
        } else if let Ok(n) = u8::try_from(v) {
            out.extend_from_slice(&[0xcc, n]);
        } else if let Ok(n) = u16::try_from(v) {
            out.push(0xcd);
            out.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(v) {
            out.push(0xce);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_integer_and_string_form() {
        let data = Bytes::from_static(&[
            0x97, 0x05, 0xcc, 0xff, 0xcd, 0x01, 0x00, 0xd3, 0, 0, 0, 0, 0, 0, 0, 7, 0xa2, b'h',
            b'i', 0xd9, 0x01, b'x', 0xc4, 0x00,
        ]);
        let mut r = Reader::new(&data);
        assert_eq!(r.array(), Ok(7));
        assert_eq!(r.uint(), Ok(5));
        assert_eq!(r.uint(), Ok(255));
        assert_eq!(r.uint(), Ok(256));
        assert_eq!(r.uint(), Ok(7));
        assert_eq!(r.bytes().as_deref(), Ok(&b"hi"[..]));
        assert_eq!(r.bytes().as_deref(), Ok(&b"x"[..]));
        assert_eq!(r.bytes().as_deref(), Ok(&b""[..]));
        assert!(r.is_empty());
    }

    #[test]
    fn integral_doubles_are_integers_and_negatives_are_refused() {
        let mut v = vec![0xcb];
        v.extend_from_slice(&1_764_000_000_000f64.to_bits().to_be_bytes());
        v.extend_from_slice(&[0xd0, 0xff]);
        let data = Bytes::from(v);
        let mut r = Reader::new(&data);
        assert_eq!(r.uint(), Ok(1_764_000_000_000));
        assert!(r.uint().is_err());
    }

    #[test]
    fn writer_picks_the_shortest_form_and_reads_back() {
        let mut out = Vec::new();
        for v in [
            0,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            4_294_967_295,
            1_764_000_000_000,
        ] {
            out.clear();
            write::uint(&mut out, v);
            let expected_len = match v {
                0..=127 => 1,
                128..=255 => 2,
                256..=65_535 => 3,
                65_536..=4_294_967_295 => 5,
                _ => 9,
            };
            assert_eq!(out.len(), expected_len, "{v}");
            let data = Bytes::from(out.clone());
            assert_eq!(Reader::new(&data).uint(), Ok(v));
        }
        for (len, header) in [(0, 1), (31, 1), (32, 2), (255, 2), (256, 3), (65_536, 5)] {
            out.clear();
            let text = vec![b'x'; len];
            write::bytes(&mut out, &text);
            assert_eq!(out.len(), len + header, "{len}");
            let data = Bytes::from(out.clone());
            assert_eq!(Reader::new(&data).bytes().as_deref(), Ok(&text[..]));
        }
        for (len, header) in [(0, 1), (15, 1), (16, 3), (65_536, 5)] {
            out.clear();
            write::array(&mut out, len);
            assert_eq!(out.len(), header, "{len}");
            let data = Bytes::from(out.clone());
            assert_eq!(Reader::new(&data).array(), Ok(len));
        }
    }

    #[test]
    fn truncated_and_oversized_lengths_are_errors() {
        for bad in [
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'][..],
            &[0xa5, b'a'],
            &[0xcf, 1, 2],
            &[],
        ] {
            let data = Bytes::copy_from_slice(bad);
            assert!(Reader::new(&data).bytes().is_err(), "{bad:?}");
        }
    }
}
