//! FreeRADIUS-format dictionaries: names, data types and enumerated values
//! of attributes, so operators can configure and read vendor attributes
//! this crate has no constants for.
//!
//! Understood lines (as in FreeRADIUS 3 `dictionary` files):
//!
//! ```text
//! ATTRIBUTE   <name> <number> <type> [flags | vendor]
//! VALUE       <attribute> <name> <number>
//! VENDOR      <name> <number> [format=<type octets>,<length octets>[,c]]
//! BEGIN-VENDOR <name> [format=...]   ...   END-VENDOR <name>
//! $INCLUDE <file>     ($INCLUDE- for an optional file)
//! ```
//!
//! Flags: `has_tag` (RFC 2868), `encrypt=1` (RFC 2865 §5.2 hiding),
//! `encrypt=2` (RFC 2868 §3.5 / RFC 2548 salt), `encrypt=3` (Ascend),
//! `array`, `concat`, `virtual`. Lines this loader has no use for (TLV
//! blocks, dotted numbers of extended attributes, protocol blocks) are
//! skipped and counted in [`Dictionary::skipped`], not rejected, so that
//! the stock FreeRADIUS dictionary loads.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::attribute::{AttributeRepr, AttributeType, Ipv6Prefix, MAX_VALUE_LEN};
use crate::error::Error;
use crate::tunnel::{self, Tag};
use crate::vendor;

/// The dictionary this crate ships: the RFC attributes it implements and
/// Microsoft's (RFC 2548), written in the FreeRADIUS format.
pub const BUILTIN: &str = include_str!("../dictionary/dictionary.lns");

#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("$INCLUDE nested more than {0} deep")]
    TooDeep(usize),
}

/// An attribute's data type (RFC 8044 names in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataType {
    /// text (UTF-8) — FreeRADIUS "string"
    String,
    /// string (opaque) — FreeRADIUS "octets"
    Octets,
    /// ipv4addr
    IpAddr,
    Ipv4Prefix,
    /// integer (32 bits)
    Integer,
    /// time
    Date,
    Ipv6Addr,
    Ipv6Prefix,
    /// ifid (8 octets)
    Ifid,
    Integer64,
    Ether,
    Byte,
    Short,
    Signed,
    /// ipaddr or ipv6addr by length
    ComboIp,
    /// Any other type; values are handled as octets.
    Other(String),
}

impl DataType {
    fn parse(s: &str) -> DataType {
        // "octets[50]" fixes a size; the type is still octets.
        let base = s.split('[').next().unwrap_or(s);
        match base.to_ascii_lowercase().as_str() {
            "string" | "text" => DataType::String,
            "octets" => DataType::Octets,
            "ipaddr" | "ipv4addr" => DataType::IpAddr,
            "ipv4prefix" => DataType::Ipv4Prefix,
            "integer" | "uint32" => DataType::Integer,
            "date" | "time" => DataType::Date,
            "ipv6addr" => DataType::Ipv6Addr,
            "ipv6prefix" => DataType::Ipv6Prefix,
            "ifid" => DataType::Ifid,
            "integer64" | "uint64" => DataType::Integer64,
            "ether" => DataType::Ether,
            "byte" | "uint8" => DataType::Byte,
            "short" | "uint16" => DataType::Short,
            "signed" | "int32" => DataType::Signed,
            "combo-ip" => DataType::ComboIp,
            _ => DataType::Other(base.to_string()),
        }
    }
}

/// How a value is encrypted on the wire (the `encrypt=` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encryption {
    #[default]
    None,
    /// RFC 2865 §5.2.
    UserPassword,
    /// RFC 2868 §3.5, RFC 2548 §2.4.2.
    Salted,
    /// Ascend-Send-Secret.
    Ascend,
}

/// A vendor and the layout of its Vendor-Specific data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    pub name: String,
    pub id: u32,
    /// Octets of the vendor type: 1, 2 or 4.
    pub type_len: u8,
    /// Octets of the vendor length: 0, 1 or 2.
    pub length_len: u8,
}

/// One attribute definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: String,
    /// 0 for the standard space.
    pub vendor: u32,
    pub code: u32,
    pub data_type: DataType,
    pub has_tag: bool,
    pub encrypt: Encryption,
    pub array: bool,
}

/// A decoded attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Octets(Vec<u8>),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Ipv6Prefix(Ipv6Prefix),
    Integer(u32),
    Integer64(u64),
    Date(u32),
    Byte(u8),
    Short(u16),
    Signed(i32),
}

/// A Vendor-Specific or standard attribute read through the dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The dictionary name, or "Attr-26.311.99" style when unknown.
    pub name: String,
    pub vendor: u32,
    pub code: u32,
    pub tag: Option<Tag>,
    pub value: Value,
    /// The enumerated name of an integer value, if the dictionary has one.
    pub value_name: Option<String>,
}

/// Attribute, vendor and value names.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    vendors: HashMap<String, Vendor>,
    vendor_names: HashMap<u32, String>,
    attributes: HashMap<String, AttributeDef>,
    by_code: HashMap<(u32, u32), String>,
    /// (attribute name lowercased) → value name → number, and reverse.
    values: HashMap<String, HashMap<String, u64>>,
    value_names: HashMap<(String, u64), String>,
    skipped: usize,
}

const MAX_INCLUDE_DEPTH: usize = 16;

fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn parse_number(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

impl Dictionary {
    pub fn new() -> Dictionary {
        Dictionary::default()
    }

    /// The built-in dictionary ([`BUILTIN`]).
    pub fn builtin() -> Dictionary {
        let mut d = Dictionary::new();
        // The shipped text is part of this crate and covered by tests.
        if let Err(e) = d.parse_str(BUILTIN, "dictionary.lns", None) {
            tracing::error!("built-in dictionary: {e}");
        }
        d
    }

    /// Load a dictionary file and what it includes.
    pub fn load(&mut self, path: &Path) -> Result<(), DictionaryError> {
        self.load_at(path, 0)
    }

    fn load_at(&mut self, path: &Path, depth: usize) -> Result<(), DictionaryError> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(DictionaryError::TooDeep(MAX_INCLUDE_DEPTH));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| DictionaryError::Read { path: path.display().to_string(), source })?;
        let dir = path.parent().map(Path::to_path_buf);
        self.parse_at(&text, &path.display().to_string(), dir.as_deref(), depth)
    }

    /// Parse dictionary text; `$INCLUDE`s are resolved against `dir`
    /// (refused when `dir` is None).
    pub fn parse_str(&mut self, text: &str, file: &str, dir: Option<&Path>) -> Result<(), DictionaryError> {
        self.parse_at(text, file, dir, 0)
    }

    fn parse_at(
        &mut self,
        text: &str,
        file: &str,
        dir: Option<&Path>,
        depth: usize,
    ) -> Result<(), DictionaryError> {
        let mut current_vendor: Option<u32> = None;
        let mut in_tlv = 0usize;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let err =
                |message: String| DictionaryError::Syntax { file: file.to_string(), line: line_no, message };
            let line = raw.split('#').next().unwrap_or("").trim();
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(&keyword) = f.first() else { continue };
            match keyword {
                "$INCLUDE" | "$INCLUDE-" => {
                    let name = f.get(1).ok_or_else(|| err("$INCLUDE without a file".into()))?;
                    let dir = dir.ok_or_else(|| err("$INCLUDE in text without a directory".into()))?;
                    let path: PathBuf = dir.join(name);
                    if keyword == "$INCLUDE-" && !path.exists() {
                        continue;
                    }
                    self.load_at(&path, depth + 1)?;
                }
                "VENDOR" => {
                    let (Some(name), Some(num)) = (f.get(1), f.get(2)) else {
                        return Err(err("VENDOR needs a name and a number".into()));
                    };
                    let id = parse_number(num)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| err(format!("bad vendor number {num}")))?;
                    let (type_len, length_len) = match f.get(3) {
                        Some(fmt) => {
                            parse_format(fmt).ok_or_else(|| err(format!("bad vendor format {fmt}")))?
                        }
                        None => (1, 1),
                    };
                    self.vendor_names.insert(id, name.to_string());
                    self.vendors
                        .insert(key(name), Vendor { name: name.to_string(), id, type_len, length_len });
                }
                "BEGIN-VENDOR" => {
                    let name = f.get(1).ok_or_else(|| err("BEGIN-VENDOR without a name".into()))?;
                    let v =
                        self.vendors.get(&key(name)).ok_or_else(|| err(format!("unknown vendor {name}")))?;
                    current_vendor = Some(v.id);
                }
                "END-VENDOR" => current_vendor = None,
                "BEGIN-TLV" => in_tlv += 1,
                "END-TLV" => in_tlv = in_tlv.saturating_sub(1),
                "ATTRIBUTE" => {
                    let (Some(name), Some(num), Some(typ)) = (f.get(1), f.get(2), f.get(3)) else {
                        return Err(err("ATTRIBUTE needs a name, a number and a type".into()));
                    };
                    // Children of TLVs and extended attributes ("241.1")
                    // are outside what this codec encodes.
                    let Some(code) = (in_tlv == 0).then(|| parse_number(num)).flatten() else {
                        self.skipped += 1;
                        continue;
                    };
                    let code = u32::try_from(code).map_err(|_| err(format!("bad number {num}")))?;
                    let mut def = AttributeDef {
                        name: name.to_string(),
                        vendor: current_vendor.unwrap_or(0),
                        code,
                        data_type: DataType::parse(typ),
                        has_tag: false,
                        encrypt: Encryption::None,
                        array: false,
                    };
                    if let Some(flags) = f.get(4) {
                        if let Some(v) = self.vendors.get(&key(flags)) {
                            // Old syntax: the vendor's name as 4th field.
                            def.vendor = v.id;
                        } else {
                            for flag in flags.split(',') {
                                match flag {
                                    "has_tag" => def.has_tag = true,
                                    "encrypt=1" => def.encrypt = Encryption::UserPassword,
                                    "encrypt=2" => def.encrypt = Encryption::Salted,
                                    "encrypt=3" => def.encrypt = Encryption::Ascend,
                                    "array" => def.array = true,
                                    _ => {}
                                }
                            }
                        }
                    }
                    if def.vendor == 0 && code > 255 {
                        // FreeRADIUS's internal attributes (dictionary.
                        // freeradius.internal) never go on the wire.
                        self.skipped += 1;
                        continue;
                    }
                    self.by_code.insert((def.vendor, def.code), def.name.clone());
                    self.attributes.insert(key(name), def);
                }
                "VALUE" => {
                    let (Some(attr), Some(name), Some(num)) = (f.get(1), f.get(2), f.get(3)) else {
                        return Err(err("VALUE needs an attribute, a name and a number".into()));
                    };
                    let n = parse_number(num).ok_or_else(|| err(format!("bad value {num}")))?;
                    self.values.entry(key(attr)).or_default().insert(key(name), n);
                    // The first name given to a number is the one printed.
                    self.value_names.entry((key(attr), n)).or_insert_with(|| name.to_string());
                }
                _ => self.skipped += 1,
            }
        }
        Ok(())
    }

    /// Lines and attributes not understood (see the module notes).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    pub fn vendor(&self, name: &str) -> Option<&Vendor> {
        self.vendors.get(&key(name))
    }

    pub fn vendor_by_id(&self, id: u32) -> Option<&Vendor> {
        self.vendor_names.get(&id).and_then(|n| self.vendors.get(&key(n)))
    }

    /// By name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.attributes.get(&key(name))
    }

    pub fn attribute_by_code(&self, vendor: u32, code: u32) -> Option<&AttributeDef> {
        self.by_code.get(&(vendor, code)).and_then(|n| self.attributes.get(&key(n)))
    }

    pub fn attributes(&self) -> impl Iterator<Item = &AttributeDef> {
        self.attributes.values()
    }

    /// The number of an enumerated value ("Service-Type", "Framed-User").
    pub fn value(&self, attribute: &str, name: &str) -> Option<u64> {
        self.values.get(&key(attribute)).and_then(|m| m.get(&key(name))).copied()
    }

    pub fn value_name(&self, attribute: &str, n: u64) -> Option<&str> {
        self.value_names.get(&(key(attribute), n)).map(String::as_str)
    }

    /// Read an attribute through the dictionary. A Vendor-Specific may hold
    /// several sub-attributes, hence the Vec. Encrypted values are
    /// returned as octets (they need the secret, see [`crate::hiding`]).
    pub fn decode(&self, a: &AttributeRepr) -> Result<Vec<Decoded>, Error> {
        if a.typ() != AttributeType::VENDOR_SPECIFIC {
            return Ok(vec![self.decode_one(0, u32::from(a.typ().0), a.value())?]);
        }
        let (vendor_id, mut data) = vendor::split(a.value())?;
        let (type_len, length_len) =
            self.vendor_by_id(vendor_id).map_or((1, 1), |v| (v.type_len, v.length_len));
        let (tl, ll) = (usize::from(type_len), usize::from(length_len));
        let mut out = Vec::new();
        while !data.is_empty() {
            let typ = data.get(..tl).ok_or(Error::Malformed("vendor type"))?;
            let code = typ.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            let (value, rest) = if ll == 0 {
                (data.get(tl..).unwrap_or(&[]), &[][..])
            } else {
                let lb = data.get(tl..tl + ll).ok_or(Error::Malformed("vendor length"))?;
                let len = usize::from(lb.iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b)));
                if len < tl + ll {
                    return Err(Error::Malformed("vendor length"));
                }
                let value = data.get(tl + ll..len).ok_or(Error::Malformed("vendor length"))?;
                (value, data.get(len..).unwrap_or(&[]))
            };
            out.push(self.decode_one(vendor_id, code, value)?);
            data = rest;
        }
        Ok(out)
    }

    fn decode_one(&self, vendor: u32, code: u32, raw: &[u8]) -> Result<Decoded, Error> {
        let def = self.attribute_by_code(vendor, code);
        let name = match def {
            Some(d) => d.name.clone(),
            None if vendor == 0 => format!("Attr-{code}"),
            None => format!("Attr-26.{vendor}.{code}"),
        };
        let mut tag = None;
        let mut value = raw;
        if let Some(d) = def.filter(|d| d.has_tag) {
            match d.data_type {
                DataType::Integer => {
                    let (t, v) = tunnel::parse_tagged_integer(raw)?;
                    return Ok(self.finish(name, vendor, code, t, Value::Integer(v)));
                }
                _ if d.encrypt == Encryption::Salted => {
                    // Tunnel-Password: the Tag octet is always there.
                    let (&t, rest) = raw.split_first().ok_or(Error::Malformed("tagged value"))?;
                    tag = Tag::new(t);
                    value = rest;
                }
                _ => (tag, value) = tunnel::parse_tagged_string(raw),
            }
        }
        let dt = match def {
            Some(d) if d.encrypt == Encryption::None => d.data_type.clone(),
            Some(_) => DataType::Octets,
            None => DataType::Octets,
        };
        let v = decode_value(&dt, value)?;
        Ok(self.finish(name, vendor, code, tag, v))
    }

    fn finish(&self, name: String, vendor: u32, code: u32, tag: Option<Tag>, value: Value) -> Decoded {
        let value_name = match value {
            Value::Integer(n) => self.value_name(&name, u64::from(n)).map(str::to_string),
            Value::Byte(n) => self.value_name(&name, u64::from(n)).map(str::to_string),
            Value::Short(n) => self.value_name(&name, u64::from(n)).map(str::to_string),
            _ => None,
        };
        Decoded { name, vendor, code, tag, value, value_name }
    }

    /// Build an attribute from its dictionary name and a textual value
    /// ("Framed-IP-Address", "192.0.2.1"; "Service-Type", "Framed-User";
    /// "Cisco-AVPair", "ip:addr-pool=x"), as a configuration file or a
    /// test would. Encrypted attributes are refused (they need the
    /// request's authenticator).
    pub fn encode(&self, name: &str, text: &str, tag: Option<Tag>) -> Result<AttributeRepr, Error> {
        let def = self.attribute(name).ok_or(Error::Invalid("unknown attribute name"))?;
        if def.encrypt != Encryption::None {
            return Err(Error::Invalid("encrypted attributes are built with crate::hiding"));
        }
        let enumerated = self.value(&def.name, text);
        let mut value = match (&def.data_type, enumerated) {
            (DataType::Integer | DataType::Date, Some(n)) => {
                u32::try_from(n).map_err(|_| Error::Invalid("value"))?.to_be_bytes().to_vec()
            }
            (DataType::Byte, Some(n)) => vec![u8::try_from(n).map_err(|_| Error::Invalid("value"))?],
            (DataType::Short, Some(n)) => {
                u16::try_from(n).map_err(|_| Error::Invalid("value"))?.to_be_bytes().to_vec()
            }
            (dt, _) => encode_text(dt, text)?,
        };
        if def.has_tag {
            value = match (&def.data_type, tag) {
                (DataType::Integer, t) => {
                    let mut v = vec![t.map_or(0, Tag::get)];
                    v.extend_from_slice(value.get(1..).unwrap_or(&[]));
                    if value.first() != Some(&0) {
                        return Err(Error::Invalid("tagged integer over 24 bits"));
                    }
                    v
                }
                (_, t) => tunnel::tagged_string(t, &value),
            };
        }
        if def.vendor == 0 {
            let typ = u8::try_from(def.code).map_err(|_| Error::Invalid("attribute number"))?;
            return AttributeRepr::new(AttributeType(typ), value);
        }
        let vendor = self.vendor_by_id(def.vendor).ok_or(Error::Invalid("unknown vendor"))?;
        let mut data = def.vendor.to_be_bytes().to_vec();
        let code = def.code.to_be_bytes();
        data.extend_from_slice(code.get(4 - usize::from(vendor.type_len)..).unwrap_or(&[]));
        let total = usize::from(vendor.type_len) + usize::from(vendor.length_len) + value.len();
        match vendor.length_len {
            0 => {}
            1 => data.push(u8::try_from(total).map_err(|_| Error::ValueTooLong(total))?),
            _ => data.extend_from_slice(
                &u16::try_from(total).map_err(|_| Error::ValueTooLong(total))?.to_be_bytes(),
            ),
        }
        data.extend_from_slice(&value);
        if data.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLong(data.len()));
        }
        AttributeRepr::new(AttributeType::VENDOR_SPECIFIC, data)
    }
}

/// `format=T,L` or `format=T,L,c`.
fn parse_format(s: &str) -> Option<(u8, u8)> {
    let f = s.strip_prefix("format=")?;
    let mut parts = f.split(',');
    let t: u8 = parts.next()?.parse().ok()?;
    let l: u8 = parts.next()?.parse().ok()?;
    (matches!(t, 1 | 2 | 4) && l <= 2).then_some((t, l))
}

fn fixed<const N: usize>(v: &[u8], what: &'static str) -> Result<[u8; N], Error> {
    v.try_into().map_err(|_| Error::Malformed(what))
}

/// Wire value to [`Value`] for a data type; lengths checked.
pub fn decode_value(dt: &DataType, v: &[u8]) -> Result<Value, Error> {
    Ok(match dt {
        DataType::String => match core::str::from_utf8(v) {
            Ok(s) => Value::Text(s.to_string()),
            // RFC 8044 §3.4: text that is not UTF-8 is still carried.
            Err(_) => Value::Octets(v.to_vec()),
        },
        DataType::IpAddr => Value::Ipv4(fixed::<4>(v, "ipaddr")?.into()),
        DataType::Ipv6Addr => Value::Ipv6(fixed::<16>(v, "ipv6addr")?.into()),
        DataType::ComboIp => match v.len() {
            4 => Value::Ipv4(fixed::<4>(v, "combo-ip")?.into()),
            16 => Value::Ipv6(fixed::<16>(v, "combo-ip")?.into()),
            _ => return Err(Error::Malformed("combo-ip")),
        },
        DataType::Ipv6Prefix => Value::Ipv6Prefix(Ipv6Prefix::parse(v)?),
        DataType::Integer => Value::Integer(u32::from_be_bytes(fixed(v, "integer")?)),
        DataType::Date => Value::Date(u32::from_be_bytes(fixed(v, "date")?)),
        DataType::Integer64 => Value::Integer64(u64::from_be_bytes(fixed(v, "integer64")?)),
        DataType::Byte => Value::Byte(u8::from_be_bytes(fixed(v, "byte")?)),
        DataType::Short => Value::Short(u16::from_be_bytes(fixed(v, "short")?)),
        DataType::Signed => Value::Signed(i32::from_be_bytes(fixed(v, "signed")?)),
        DataType::Octets | DataType::Ifid | DataType::Ether | DataType::Ipv4Prefix | DataType::Other(_) => {
            Value::Octets(v.to_vec())
        }
    })
}

fn encode_text(dt: &DataType, text: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::Invalid("value does not fit the attribute's type");
    Ok(match dt {
        DataType::String => text.as_bytes().to_vec(),
        DataType::IpAddr => text.parse::<Ipv4Addr>().map_err(|_| bad())?.octets().to_vec(),
        DataType::Ipv6Addr => text.parse::<Ipv6Addr>().map_err(|_| bad())?.octets().to_vec(),
        DataType::ComboIp => match text.parse::<std::net::IpAddr>().map_err(|_| bad())? {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        },
        DataType::Ipv6Prefix => {
            let (a, l) = text.split_once('/').ok_or_else(bad)?;
            let p = Ipv6Prefix::new(a.parse().map_err(|_| bad())?, l.parse().map_err(|_| bad())?)?;
            p.to_bytes()
        }
        DataType::Integer | DataType::Date => {
            u32::try_from(parse_number(text).ok_or_else(bad)?).map_err(|_| bad())?.to_be_bytes().to_vec()
        }
        DataType::Integer64 => parse_number(text).ok_or_else(bad)?.to_be_bytes().to_vec(),
        DataType::Byte => vec![u8::try_from(parse_number(text).ok_or_else(bad)?).map_err(|_| bad())?],
        DataType::Short => {
            u16::try_from(parse_number(text).ok_or_else(bad)?).map_err(|_| bad())?.to_be_bytes().to_vec()
        }
        DataType::Signed => text.parse::<i32>().map_err(|_| bad())?.to_be_bytes().to_vec(),
        DataType::Octets | DataType::Ifid | DataType::Ether | DataType::Ipv4Prefix | DataType::Other(_) => {
            let h = text.strip_prefix("0x").ok_or_else(bad)?;
            if h.len() % 2 != 0 {
                return Err(bad());
            }
            (0..h.len())
                .step_by(2)
                .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()).ok_or_else(bad))
                .collect::<Result<Vec<u8>, Error>>()?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::microsoft;

    #[test]
    fn builtin_covers_every_named_type() {
        let d = Dictionary::builtin();
        assert_eq!(d.skipped(), 0);
        for t in 0..=255u8 {
            if let Some(name) = AttributeType(t).name() {
                let def = d.attribute(name).unwrap_or_else(|| panic!("{name} missing"));
                assert_eq!((def.vendor, def.code), (0, u32::from(t)), "{name}");
            }
        }
        assert_eq!(
            d.attribute("tunnel-password").map(|a| (a.has_tag, a.encrypt)),
            Some((true, Encryption::Salted))
        );
        assert_eq!(d.attribute("User-Password").map(|a| a.encrypt), Some(Encryption::UserPassword));
        assert_eq!(d.attribute("MS-CHAP2-Success").map(|a| (a.vendor, a.code)), Some((311, 26)));
        assert_eq!(d.attribute("MS-MPPE-Send-Key").map(|a| a.encrypt), Some(Encryption::Salted));
        assert_eq!(d.value("Service-Type", "Framed-User"), Some(2));
        assert_eq!(d.value("NAS-Port-Type", "Virtual"), Some(5));
        assert_eq!(d.value_name("Acct-Terminate-Cause", 4), Some("Idle-Timeout"));
        assert_eq!(d.value("Tunnel-Type", "L2TP"), Some(3));
        assert_eq!(d.value("Error-Cause", "Session-Context-Not-Found"), Some(503));
    }

    #[test]
    fn vendor_formats_and_old_syntax() {
        let mut d = Dictionary::new();
        d.parse_str(
            "# comment\n\
             VENDOR Acme 9999 format=2,2\n\
             VENDOR Old 4242\n\
             VENDOR USR 429 format=4,0\n\
             BEGIN-VENDOR Acme\n\
             ATTRIBUTE Acme-Rate 300 integer   # trailing comment\n\
             ATTRIBUTE Acme-Name 2 string\n\
             VALUE Acme-Rate Fast 1\n\
             END-VENDOR Acme\n\
             ATTRIBUTE Old-Thing 7 ipaddr Old\n\
             ATTRIBUTE USR-Speed 0x9801 integer USR\n\
             BEGIN-TLV Foo\nATTRIBUTE Foo-Child 1 integer\nEND-TLV Foo\n\
             ATTRIBUTE Ext-Thing 241.1 integer\n\
             PROTOCOL RADIUS 1\n\
             ATTRIBUTE Internal-Thing 1000 integer\n",
            "test",
            None,
        )
        .expect("parse");
        assert_eq!(d.skipped(), 4);
        assert!(d.attribute("Internal-Thing").is_none());
        let a = d.encode("Acme-Rate", "Fast", None).expect("encode");
        // Vendor 9999, 2-octet type 300, 2-octet length 8, value 1.
        assert_eq!(a.value(), [0, 0, 0x27, 0x0f, 0x01, 0x2c, 0, 8, 0, 0, 0, 1]);
        let dec = d.decode(&a).expect("decode");
        assert_eq!(dec[0].name, "Acme-Rate");
        assert_eq!(dec[0].value, Value::Integer(1));
        assert_eq!(dec[0].value_name.as_deref(), Some("Fast"));
        let o = d.encode("old-thing", "192.0.2.9", None).expect("encode");
        assert_eq!(o.value(), [0, 0, 0x10, 0x92, 7, 6, 192, 0, 2, 9]);
        assert_eq!(d.decode(&o).expect("decode")[0].value, Value::Ipv4([192, 0, 2, 9].into()));
        let u = d.encode("USR-Speed", "56000", None).expect("encode");
        assert_eq!(u.value(), [0, 0, 1, 0xad, 0, 0, 0x98, 0x01, 0, 0, 0xda, 0xc0]);
        assert_eq!(d.decode(&u).expect("decode")[0].value, Value::Integer(56000));
        // Unknown vendor: the recommended 1,1 layout and a synthetic name.
        let x = crate::vendor::VendorSpecific::single(7, 3, b"hi".to_vec());
        let x = AttributeRepr::vendor_specific(&x).expect("attr");
        assert_eq!(d.decode(&x).expect("decode")[0].name, "Attr-26.7.3");
        assert!(d.encode("Acme-Rate", "slow", None).is_err());
        assert!(d.encode("Nope", "1", None).is_err());
    }

    #[test]
    fn syntax_errors_have_lines() {
        for (text, line) in [
            ("VENDOR X\n", 1),
            ("\nATTRIBUTE A 1\n", 2),
            ("BEGIN-VENDOR Nope\n", 1),
            ("VALUE A B x\n", 1),
            ("VENDOR X 1 format=3,1\n", 1),
            ("$INCLUDE foo\n", 1),
        ] {
            match Dictionary::new().parse_str(text, "f", None) {
                Err(DictionaryError::Syntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn includes_and_cycles() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("main"), "$INCLUDE sub\n$INCLUDE- missing\nATTRIBUTE A 200 integer\n")
            .expect("write");
        std::fs::write(dir.path().join("sub"), "ATTRIBUTE B 201 string\n").expect("write");
        let mut d = Dictionary::new();
        d.load(&dir.path().join("main")).expect("load");
        assert!(d.attribute("A").is_some() && d.attribute("B").is_some());
        std::fs::write(dir.path().join("loop"), "$INCLUDE loop\n").expect("write");
        assert!(matches!(Dictionary::new().load(&dir.path().join("loop")), Err(DictionaryError::TooDeep(_))));
        assert!(Dictionary::new().load(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn decode_tagged_and_standard() {
        let d = Dictionary::builtin();
        let t = d.encode("Tunnel-Type", "L2TP", Tag::new(1)).expect("encode");
        assert_eq!(t.value(), [1, 0, 0, 3]);
        let dec = d.decode(&t).expect("decode");
        assert_eq!((dec[0].tag, dec[0].value_name.as_deref()), (Tag::new(1), Some("L2TP")));
        let e = d.encode("Tunnel-Server-Endpoint", "192.0.2.1", Tag::new(2)).expect("encode");
        assert_eq!(d.decode(&e).expect("decode")[0].value, Value::Text("192.0.2.1".into()));
        let p = d.encode("Delegated-IPv6-Prefix", "2001:db8:5::/48", None).expect("encode");
        assert_eq!(p.as_ipv6_prefix().map(|p| p.len), Ok(48));
        assert!(d.encode("User-Password", "x", None).is_err());
        let ms = microsoft::attribute(microsoft::ms::PRIMARY_DNS_SERVER, vec![192, 0, 2, 53]).expect("ms");
        let dec = d.decode(&ms).expect("decode");
        assert_eq!(
            (dec[0].name.as_str(), &dec[0].value),
            ("MS-Primary-DNS-Server", &Value::Ipv4([192, 0, 2, 53].into()))
        );
        let bad = AttributeRepr::new(AttributeType::FRAMED_IP_ADDRESS, vec![1, 2]).expect("a");
        assert!(d.decode(&bad).is_err());
    }
}
