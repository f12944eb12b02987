//! Bencode values, as rtpengine's "ng" control protocol carries them.
//!
//! Bencode (BitTorrent BEP 3) has four types: integers `i42e`, byte strings `4:spam`, lists
//! `l…e` and dictionaries `d…e`. Dictionary keys are byte strings; the decoder accepts them in
//! any order (rtpengine and other peers do not always sort), the encoder writes them sorted
//! because a [`Dict`] is a `BTreeMap`. The decoder is bounded ([`Limits`]): a hostile or broken
//! peer cannot exhaust the stack with deep nesting or memory with huge lengths, and it never
//! panics.

use std::collections::BTreeMap;

use bytes::Bytes;

/// A bencode dictionary: byte-string keys, kept sorted.
pub type Dict = BTreeMap<Bytes, Value>;

/// One bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(Bytes),
    /// `l<values>e`.
    List(Vec<Self>),
    /// `d<key><value>…e`.
    Dict(Dict),
}

impl Value {
    /// A byte-string value from text.
    pub fn str(s: &str) -> Self {
        Self::Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The bytes when this is a byte string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text when this is a UTF-8 byte string.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The integer when this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The list when this is one.
    pub fn as_list(&self) -> Option<&[Self]> {
        match self {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary when this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Self::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Appends the encoding of this value to `out` (dictionary keys sorted).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Self::Bytes(b) => encode_bytes(b, out),
            Self::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Self::Dict(d) => encode_dict(d, out),
        }
    }

    /// The encoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Appends the encoding of a dictionary to `out`, keys sorted.
pub fn encode_dict(d: &Dict, out: &mut Vec<u8>) {
    out.push(b'd');
    for (k, v) in d {
        encode_bytes(k, out);
        v.encode_into(out);
    }
    out.push(b'e');
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Bounds the decoder enforces on untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Most values (of any kind) in one document.
    pub max_values: usize,
}

impl Default for Limits {
    /// Depth 32 and 100 000 values: far above what an ng reply holds (a `list` of calls or
    /// a `query` of a call with a few streams), far below what hurts.
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_values: 100_000,
        }
    }
}

/// Why a bencode document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("bencode ends early at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that starts no value, or a malformed integer or length.
    #[error("unexpected byte {byte:#04x} at {at}")]
    UnexpectedByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An integer that does not fit an `i64`, or a malformed one (`i-0e`, `i03e`).
    #[error("bad integer at byte {0}")]
    BadInteger(usize),
    /// A byte-string length beyond the input.
    #[error("byte string at {0} is longer than the input")]
    LengthBeyondInput(usize),
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {0} is not a byte string")]
    KeyNotBytes(usize),
    /// The same key twice in one dictionary.
    #[error("duplicate dictionary key at byte {0}")]
    DuplicateKey(usize),
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// More values than [`Limits::max_values`].
    #[error("more than {0} values")]
    TooManyValues(usize),
    /// Bytes after the value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Decodes exactly one value filling `input`, with the default [`Limits`].
pub fn decode(input: &Bytes) -> Result<Value, DecodeError> {
    decode_with(input, Limits::default())
}

/// Decodes exactly one value filling `input` within `limits`.
pub fn decode_with(input: &Bytes, limits: Limits) -> Result<Value, DecodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(DecodeError::Trailing(input.len() - d.pos));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a Bytes,
    pos: usize,
    limits: Limits,
    values: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::UnexpectedEnd(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(DecodeError::TooManyValues(self.limits.max_values));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                self.int().map(Value::Int)
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' | b'd' if depth >= self.limits.max_depth => {
                Err(DecodeError::TooDeep(self.limits.max_depth))
            }
            b'l' => {
                self.pos += 1;
                let mut list = Vec::new();
                while self.peek()? != b'e' {
                    list.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(list))
            }
            b'd' => {
                self.pos += 1;
                let mut dict = Dict::new();
                while self.peek()? != b'e' {
                    let at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotBytes(at));
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    if dict.insert(key, value).is_some() {
                        return Err(DecodeError::DuplicateKey(at));
                    }
                }
                self.pos += 1;
                Ok(Value::Dict(dict))
            }
            byte => Err(DecodeError::UnexpectedByte { byte, at: self.pos }),
        }
    }

    /// Digits up to `end`, after the `i` (or at a length); leaves `pos` after `end`.
    fn digits(&mut self, end: u8) -> Result<&[u8], DecodeError> {
        let start = self.pos;
        let rest = self
            .input
            .get(start..)
            .ok_or(DecodeError::UnexpectedEnd(start))?;
        let len = rest
            .iter()
            .position(|b| *b == end)
            .ok_or(DecodeError::UnexpectedEnd(self.input.len()))?;
        self.pos = start + len + 1;
        rest.get(..len).ok_or(DecodeError::UnexpectedEnd(start))
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        let at = self.pos;
        let digits = self.digits(b'e')?;
        let (neg, magnitude) = match digits.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, digits),
        };
        let canonical = match magnitude {
            [] => false,
            [b'0'] => !neg,
            [b'0', ..] => false,
            m => m.iter().all(u8::is_ascii_digit),
        };
        if !canonical {
            return Err(DecodeError::BadInteger(at));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(DecodeError::BadInteger(at))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let at = self.pos;
        let digits = self.digits(b':')?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::UnexpectedByte {
                byte: digits.first().copied().unwrap_or(b':'),
                at,
            });
        }
        let len = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(DecodeError::LengthBeyondInput(at))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.input.len())
            .ok_or(DecodeError::LengthBeyondInput(at))?;
        let b = self.input.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Value, DecodeError> {
        decode(&Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn decodes_each_type() {
        assert_eq!(dec("i42e"), Ok(Value::Int(42)));
        assert_eq!(dec("i-7e"), Ok(Value::Int(-7)));
        assert_eq!(dec("i0e"), Ok(Value::Int(0)));
        assert_eq!(dec("4:spam"), Ok(Value::str("spam")));
        assert_eq!(dec("0:"), Ok(Value::str("")));
        assert_eq!(
            dec("l4:spami1ee"),
            Ok(Value::List(vec![Value::str("spam"), Value::Int(1)]))
        );
    }

    #[test]
    fn accepts_unsorted_keys_and_encodes_sorted() {
        let v = dec("d3:zzzi1e3:aaa1:xe").unwrap();
        assert_eq!(v.encode(), b"d3:aaa1:x3:zzzi1ee");
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!(dec("i-0e"), Err(DecodeError::BadInteger(1)));
        assert_eq!(dec("i03e"), Err(DecodeError::BadInteger(1)));
        assert_eq!(dec("ie"), Err(DecodeError::BadInteger(1)));
        assert_eq!(
            dec("i99999999999999999999e"),
            Err(DecodeError::BadInteger(1))
        );
        assert_eq!(dec("5:abc"), Err(DecodeError::LengthBeyondInput(0)));
        assert_eq!(
            dec("99999999999999999999999:a"),
            Err(DecodeError::LengthBeyondInput(0))
        );
        assert_eq!(dec("di1ei2ee"), Err(DecodeError::KeyNotBytes(1)));
        assert_eq!(dec("d1:ai1e1:ai2ee"), Err(DecodeError::DuplicateKey(7)));
        assert_eq!(dec("i1ei2e"), Err(DecodeError::Trailing(3)));
        assert_eq!(dec("l"), Err(DecodeError::UnexpectedEnd(1)));
        assert_eq!(dec(""), Err(DecodeError::UnexpectedEnd(0)));
        assert!(matches!(dec("x"), Err(DecodeError::UnexpectedByte { .. })));
    }

    #[test]
    fn bounds_depth_and_count() {
        let deep = "l".repeat(100_000) + &"e".repeat(100_000);
        assert_eq!(dec(&deep), Err(DecodeError::TooDeep(32)));
        let many = format!("l{}e", "i1e".repeat(200_000));
        assert_eq!(dec(&many), Err(DecodeError::TooManyValues(100_000)));
    }

    /// Random byte strings from a fixed xorshift seed, biased towards bencode's own bytes:
    /// decoding never panics and anything accepted re-encodes to something accepted.
    #[test]
    fn random_input_never_panics() {
        let alphabet = b"0123456789:ilde-e";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 48) as usize;
            let mut s = seed;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    s = s.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    if s.is_multiple_of(8) {
                        (s >> 32) as u8
                    } else {
                        alphabet[((s >> 24) as usize) % alphabet.len()]
                    }
                })
                .collect();
            if let Ok(v) = decode(&Bytes::from(input)) {
                assert!(decode(&Bytes::from(v.encode())).is_ok());
            }
        }
    }

    /// Round trip of a nested document, then every truncation and every single-byte mutation
    /// of it: decoding never panics, and whatever decodes re-encodes to a decodable document.
    #[test]
    fn mutations_never_panic() {
        let doc =
            dec("d3:sdp10:v=0\r\no=- 15:flagsl5:trust6:stricte4:listl3:subi-12ee1:ni0ee").unwrap();
        let bytes = doc.encode();
        assert_eq!(dec(std::str::from_utf8(&bytes).unwrap()), Ok(doc));
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for cut in 0..=bytes.len() {
            let _ = decode(&Bytes::copy_from_slice(&bytes[..cut]));
        }
        for at in 0..bytes.len() {
            for byte in [0u8, b'0', b'9', b':', b'd', b'l', b'i', b'e', b'-', 0xff] {
                let mut m = bytes.clone();
                m[at] = byte;
                if let Ok(v) = decode(&Bytes::from(m)) {
                    assert!(decode(&Bytes::from(v.encode())).is_ok());
                }
            }
        }
        // Random splices with a fixed xorshift seed: deterministic.
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut m = bytes.clone();
            let n = (seed % 4) as usize + 1;
            for k in 0..n {
                let at = ((seed >> (8 * k)) as usize) % m.len();
                m[at] = (seed >> (8 * k + 3)) as u8;
            }
            if seed.is_multiple_of(3) {
                m.truncate(((seed >> 40) as usize) % m.len());
            }
            if let Ok(v) = decode(&Bytes::from(m)) {
                assert!(decode(&Bytes::from(v.encode())).is_ok());
            }
        }
    }
}
