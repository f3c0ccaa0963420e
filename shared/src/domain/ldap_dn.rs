//! Distinguished names compared as DNs, not as strings (RFC 4514).
//!
//! A directory writes the same DN in more than one way: a group's `member`
//! value may say `CN=R&D\2C Berlin, OU=Groups` where the entry's own DN
//! is `cn=R&D\, Berlin,ou=Groups`. [`key`] parses a DN into its RDNs of
//! (attribute type, value) pairs and renders them back in one canonical
//! form, so two spellings of one DN get one key:
//!
//! - attribute types in lower case, OIDs and long names of the usual naming
//!   attributes as their short names (`2.5.4.3`, `OID.2.5.4.3` and
//!   `commonName` are `cn`);
//! - values unescaped (`\,` and `\2C` alike; hex escapes are bytes, decoded
//!   as UTF-8, so `\C3\A9` is `é`), quoted values (RFC 2253) and `#` + BER
//!   hex strings read, spaces around types, values and separators dropped
//!   (an escaped space, `\ `, is kept), `;` taken as `,` (RFC 2253 §4);
//! - values in lower case (Unicode), as Active Directory and Domino compare
//!   cn, ou, o and dc;
//! - the parts of a multi-valued RDN (`cn=a+uid=b`) in sorted order;
//! - rendered with `\` before `"+,;<>\`, a leading `#` or space and a
//!   trailing space, `\00` for NUL; nothing else escaped.
//!
//! A plain DN (`cn=Ada Adams,ou=Sales,o=Dirsync`: short types, no escapes,
//! no spaces around separators) therefore keeps exactly the key a plain
//! lower-casing gave it, which is what Domino object ids were before.
//!
//! A string that is not a DN (a lone `\` at the end, `\ZZ`, `=x`, bytes
//! that are not UTF-8) gets its ASCII lower-casing as key, as before. Such a
//! key never equals a DN's: whether a string parses does not depend on the
//! case of its ASCII letters, and every canonical key parses (to itself),
//! so a fallback key that equalled one would itself have parsed.
//!
//! It lives with the domain types because connectors are checked with it
//! when they are given (a base DN that is not a DN fails at `connector
//! add`); the LDAP source compares with the same key.

/// The comparison key of a DN: its canonical form, or for a string that is
/// not a DN its ASCII lower-casing.
pub fn key(dn: &str) -> String {
    match parse(dn) {
        Some(rdns) => render(&rdns),
        None => dn.to_ascii_lowercase(),
    }
}

/// Whether `dn` is a DN (the empty string is the empty DN, the root).
pub fn is_dn(dn: &str) -> bool {
    parse(dn).is_some()
}

/// Whether the entry `dn` is `base` or lies under it: `base`'s RDNs end
/// `dn`'s, compared as [`key`] compares them. Everything is under the root
/// (the empty DN); a string that is not a DN is under nothing but itself.
pub fn within(dn: &str, base: &str) -> bool {
    match (parse(dn), parse(base)) {
        (Some(dn), Some(base)) => dn.ends_with(&base),
        _ => key(dn) == key(base),
    }
}

/// The search bases in a `;`-separated list (`o=Acme; o=AcmeEU`), each
/// trimmed, empty parts left out. A `;` escaped (`\;`) or inside a quoted
/// value belongs to its DN. (RFC 2253 also allowed `;` between RDNs; a
/// list of bases cannot, and no directory writes DNs that way today.)
pub fn split_bases(list: &str) -> Vec<String> {
    let mut bases = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in list.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                bases.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    bases.push(current);
    bases
        .into_iter()
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect()
}

/// One attribute type and value of an RDN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ava {
    /// Lower case, short name where one is known.
    ty: String,
    value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    /// Unescaped, in lower case.
    Text(String),
    /// A `#` hex string that is not a BER-encoded string: its bytes.
    Binary(Vec<u8>),
}

type Rdn = Vec<Ava>;

fn render(rdns: &[Rdn]) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, ava) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&ava.ty);
            out.push('=');
            render_value(&ava.value, &mut out);
        }
    }
    out
}

fn render_value(value: &Value, out: &mut String) {
    match value {
        Value::Binary(bytes) => {
            out.push('#');
            for b in bytes {
                out.push_str(&format!("{b:02x}"));
            }
        }
        Value::Text(text) => {
            let last = text.chars().count().saturating_sub(1);
            for (i, c) in text.chars().enumerate() {
                match c {
                    '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    ' ' | '#' if i == 0 => {
                        out.push('\\');
                        out.push(c);
                    }
                    ' ' if i == last => out.push_str("\\ "),
                    '\0' => out.push_str("\\00"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// The RDNs of `dn`, each with its parts sorted; `None` if it is not a DN.
/// The empty string (or only spaces) is the empty DN.
fn parse(dn: &str) -> Option<Vec<Rdn>> {
    let mut p = Parser {
        s: dn.as_bytes(),
        i: 0,
    };
    p.spaces();
    if p.peek().is_none() {
        return Some(Vec::new());
    }
    let mut rdns = Vec::new();
    loop {
        let mut rdn = vec![p.ava()?];
        while p.peek() == Some(b'+') {
            p.i += 1;
            rdn.push(p.ava()?);
        }
        rdn.sort();
        rdns.push(rdn);
        match p.next() {
            None => return Some(rdns),
            Some(b',' | b';') => {}
            Some(_) => return None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// At the end or at a separator (after any spaces)?
    fn at_boundary(&mut self) -> bool {
        self.spaces();
        matches!(self.peek(), None | Some(b',' | b';' | b'+'))
    }

    /// `type = value`, spaces around each; stops at the separator after it.
    fn ava(&mut self) -> Option<Ava> {
        self.spaces();
        let ty = self.attribute_type()?;
        self.spaces();
        if self.next()? != b'=' {
            return None;
        }
        self.spaces();
        let value = match self.peek() {
            Some(b'#') => {
                self.i += 1;
                self.hex_string()?
            }
            Some(b'"') => {
                self.i += 1;
                text(self.quoted()?)?
            }
            _ => text(self.string()?)?,
        };
        self.at_boundary().then_some(Ava { ty, value })
    }

    /// A descriptor (`cn`) or numeric OID (`2.5.4.3`, also `OID.2.5.4.3`),
    /// in lower case and as its short name where one is known.
    fn attribute_type(&mut self) -> Option<String> {
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            self.i += 1;
        }
        let ty = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .to_ascii_lowercase();
        let oid = ty.strip_prefix("oid.").unwrap_or(&ty);
        let valid = if oid.starts_with(|c: char| c.is_ascii_digit()) {
            oid.split('.').all(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (n == "0" || !n.starts_with('0'))
            })
        } else {
            ty.starts_with(|c: char| c.is_ascii_alphabetic())
                && ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !valid {
            return None;
        }
        Some(match short_name(oid) {
            Some(short) => short.to_owned(),
            None => oid.to_owned(),
        })
    }

    /// `\` and what follows it: a special character or two hex digits.
    fn escape(&mut self) -> Option<u8> {
        match self.next()? {
            b @ (b'\\' | b'"' | b'+' | b',' | b';' | b'<' | b'>' | b' ' | b'#' | b'=') => Some(b),
            hi => {
                let hi = hex(hi)?;
                let lo = hex(self.next()?)?;
                Some((hi << 4) | lo)
            }
        }
    }

    /// An unquoted value, up to the next separator: its bytes with the
    /// unescaped spaces at its end dropped.
    fn string(&mut self) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut kept = 0;
        loop {
            match self.peek() {
                None | Some(b',' | b';' | b'+') => break,
                Some(b'"') => return None,
                Some(b'\\') => {
                    self.i += 1;
                    bytes.push(self.escape()?);
                    kept = bytes.len();
                }
                Some(b' ') => {
                    self.i += 1;
                    bytes.push(b' ');
                }
                Some(b) => {
                    self.i += 1;
                    bytes.push(b);
                    kept = bytes.len();
                }
            }
        }
        bytes.truncate(kept);
        Some(bytes)
    }

    /// A quoted value (after its `"`), up to and including the closing `"`.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Some(bytes),
                b'\\' => bytes.push(self.escape()?),
                b => bytes.push(b),
            }
        }
    }

    /// A `#` hex string (after its `#`): a BER-encoded string as its text,
    /// anything else as bytes.
    fn hex_string(&mut self) -> Option<Value> {
        let mut bytes = Vec::new();
        while let Some(hi) = self.peek().and_then(hex) {
            self.i += 1;
            bytes.push((hi << 4) | hex(self.next()?)?);
        }
        if bytes.is_empty() {
            return None;
        }
        Some(match ber_string(&bytes) {
            Some(s) => Value::Text(s.to_lowercase()),
            None => Value::Binary(bytes),
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// A value's bytes as lower-case text; `None` if they are not UTF-8.
fn text(bytes: Vec<u8>) -> Option<Value> {
    String::from_utf8(bytes)
        .ok()
        .map(|s| Value::Text(s.to_lowercase()))
}

/// The text of a BER-encoded UTF8String, PrintableString or IA5String (the
/// forms a directory string takes): one element, definite length.
fn ber_string(ber: &[u8]) -> Option<&str> {
    let (&tag, rest) = ber.split_first()?;
    if !matches!(tag, 0x0c | 0x13 | 0x16) {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, content) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if content.len() != len {
        return None;
    }
    std::str::from_utf8(content).ok()
}

/// The short name of a naming attribute given by OID or long name.
fn short_name(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "2.5.4.3" | "commonname" => "cn",
        "2.5.4.4" | "surname" => "sn",
        "2.5.4.5" => "serialnumber",
        "2.5.4.6" | "countryname" => "c",
        "2.5.4.7" | "localityname" => "l",
        "2.5.4.8" | "stateorprovincename" => "st",
        "2.5.4.9" | "streetaddress" => "street",
        "2.5.4.10" | "organizationname" => "o",
        "2.5.4.11" | "organizationalunitname" => "ou",
        "2.5.4.12" => "title",
        "0.9.2342.19200300.100.1.1" | "userid" => "uid",
        "0.9.2342.19200300.100.1.25" | "domaincomponent" => "dc",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_lists_split_at_semicolons_outside_escapes_and_quotes() {
        assert_eq!(split_bases("o=Acme; o=AcmeEU"), ["o=Acme", "o=AcmeEU"]);
        assert_eq!(split_bases(" o=Acme ;; "), ["o=Acme"]);
        assert!(split_bases("  ").is_empty());
        assert_eq!(
            split_bases("cn=a\\;b,o=X;o=\"Y;Z\""),
            ["cn=a\\;b,o=X", "o=\"Y;Z\""]
        );
    }

    #[test]
    fn an_entry_is_within_its_bases_compared_as_dns() {
        assert!(within("cn=Ada,ou=Sales,o=Acme", "OU=sales, O=ACME"));
        assert!(within("o=Acme", "o=Acme"));
        assert!(within("cn=All Staff", ""));
        assert!(!within("cn=Ada,ou=Sales,o=Acme", "o=AcmeEU"));
        assert!(!within("cn=x\\,o=Acme", "o=Acme"), "one RDN, not two");
        assert!(!within("o=Acme", "ou=Sales,o=Acme"));
        assert!(is_dn("") && is_dn("o=Acme") && !is_dn("Deny Access") && !is_dn("=x"));
    }

    /// Asserts that all `dns` have one key, and that it is `canonical`.
    fn same(canonical: &str, dns: &[&str]) {
        for dn in dns {
            assert_eq!(key(dn), canonical, "{dn:?}");
        }
        assert_eq!(key(canonical), canonical, "a canonical key is its own key");
    }

    #[test]
    fn escaped_commas_are_one_character_however_written() {
        same(
            "cn=r&d\\, berlin,ou=groups,dc=corp",
            &[
                "CN=R&D\\, Berlin,OU=Groups,DC=corp",
                "cn=R&D\\2C Berlin,ou=Groups,dc=corp",
                "cn=r&d\\2c berlin,ou=groups,dc=corp",
                "CN=\"R&D, Berlin\",OU=Groups,DC=corp",
            ],
        );
        assert_ne!(key("cn=R&D\\, Berlin"), key("cn=R&D,cn=Berlin"));
    }

    #[test]
    fn spaces_around_separators_and_values_do_not_count() {
        same(
            "cn=ada adams,ou=sales,o=dirsync",
            &[
                "CN=Ada Adams, OU=Sales, O=Dirsync",
                "CN = Ada Adams ,OU= Sales;O =Dirsync ",
                "  cn=Ada Adams,ou=Sales,o=Dirsync",
            ],
        );
        // Spaces inside a value count, and an escaped one at either end.
        assert_ne!(key("cn=Ada  Adams"), key("cn=Ada Adams"));
        same(
            "cn=\\ ada\\ ",
            &["cn=\\ Ada\\ ", "cn=\\20Ada\\20", "cn=\" Ada \""],
        );
        assert_ne!(key("cn=\\ Ada\\ "), key("cn=Ada"));
        same("cn=\\ ", &["cn=\\ ", "cn=\\20 "]);
        same("cn=\\  \\ ", &["cn=\\20 \\20", "cn=\\  \\ "]);
    }

    #[test]
    fn special_characters_escaped_as_themselves_or_in_hex() {
        let cases: [(&str, &[&str]); 7] = [
            ("cn=a\\+b", &["cn=a\\+b", "cn=a\\2Bb", "cn=a\\2bb"]),
            (
                "cn=say \\\"hi\\\"",
                &["cn=Say \\\"Hi\\\"", "cn=Say \\22Hi\\22"],
            ),
            (
                "cn=back\\\\slash",
                &["cn=Back\\\\slash", "cn=back\\5Cslash"],
            ),
            ("cn=a\\;b", &["cn=a\\;b", "cn=a\\3Bb"]),
            ("cn=a\\<b\\>", &["cn=a\\<b\\>", "cn=a<b>", "cn=a\\3cb\\3e"]),
            ("cn=a=b", &["cn=a=b", "cn=a\\=b", "cn=a\\3Db"]),
            (
                "cn=\\#1,o=x#",
                &["cn=\\#1,o=x#", "cn=\\231,o=x\\#", "cn=\\231,o=x\\23"],
            ),
        ];
        for (canonical, dns) in cases {
            same(canonical, dns);
        }
        same("cn=a\\00b", &["cn=a\\00b"]);
    }

    #[test]
    fn hex_escapes_are_utf8_bytes_and_case_is_unicode() {
        same(
            "cn=éva müller,ou=zürich",
            &[
                "CN=\\C3\\89va M\\c3\\bcller,OU=Z\\C3\\BCrich",
                "cn=Éva Müller,ou=Zürich",
                "cn=éva müller,ou=ZÜRICH",
            ],
        );
        same("cn=ß", &["cn=\\C3\\9F"]);
    }

    #[test]
    fn multi_valued_rdns_are_sorted() {
        same(
            "cn=a+uid=b,o=x",
            &[
                "cn=a+uid=b,o=x",
                "UID=b+CN=a,O=x",
                "uid = b + cn = a , o = x",
            ],
        );
        assert_ne!(key("cn=a+uid=b"), key("cn=a,uid=b"));
        assert_ne!(key("cn=a\\+uid=b"), key("cn=a+uid=b"));
    }

    #[test]
    fn oids_and_long_names_are_short_names() {
        same(
            "cn=ada,ou=sales,dc=corp",
            &[
                "2.5.4.3=Ada,2.5.4.11=Sales,0.9.2342.19200300.100.1.25=corp",
                "OID.2.5.4.3=Ada,oid.2.5.4.11=Sales,DC=corp",
                "commonName=Ada,organizationalUnitName=Sales,domainComponent=corp",
                // BER: UTF8String and PrintableString "Ada".
                "2.5.4.3=#0C03416461,ou=Sales,dc=corp",
                "cn=#1303416461,ou=Sales,dc=corp",
            ],
        );
        same("1.2.3=x", &["1.2.3=X", "OID.1.2.3=x"]);
        // Not a string in BER: kept as its bytes, and not the text "#04..".
        same("cn=#0401ff", &["cn=#0401FF", "cn = #0401ff "]);
        assert_ne!(key("cn=#0401ff"), key("cn=\\#0401ff"));
    }

    #[test]
    fn plain_dns_keep_their_lower_cased_key() {
        // Domino object ids are these keys: the DNs the Domino seed writes
        // (infra/services/ldap/domino-seed.py), and ones like them, must
        // keep exactly the key they had (the DN lower-cased) or every
        // stored object would be removed and created again.
        let given = [
            "Ada", "Ben", "Carla", "Dmitri", "Elena", "Farah", "George", "Hana", "Ivan", "Julia",
        ];
        let surname = ["Adams", "Baker", "Chowdhury", "Dubois", "Evans"];
        let mut dns = vec![
            "o=Dirsync".to_owned(),
            "cn=Directory Reader,o=Dirsync".to_owned(),
            "CN=Ada Adams,OU=Sales,O=Dirsync".to_owned(),
            "cn=O'Brien-Smith Jr. & Co (2),ou=Sales,o=Dirsync".to_owned(),
            "uid=abaker,dc=notes,dc=dirsync,dc=test".to_owned(),
        ];
        for g in [
            "All People",
            "Sales",
            "Sales Managers",
            "Deny Access",
            "Empty Group",
        ] {
            dns.push(format!("cn={g},o=Dirsync"));
        }
        for (i, (g, s)) in surname
            .iter()
            .flat_map(|s| given.iter().map(move |g| (g, s)))
            .enumerate()
        {
            let ou = ["Sales", "Engineering", "Support"][i % 3];
            dns.push(format!("cn={g} {s},ou={ou},o=Dirsync"));
        }
        for dn in &dns {
            assert_eq!(key(dn), dn.to_ascii_lowercase(), "{dn}");
        }
        assert_eq!(
            key("cn=Ada Adams,ou=Sales,o=Dirsync"),
            "cn=ada adams,ou=sales,o=dirsync"
        );
    }

    #[test]
    fn strings_that_are_not_dns_get_a_key_no_dn_has() {
        let garbage = [
            "cn=a\\",
            "cn=\\ZZ",
            "cn=\\2",
            "cn=\\2G",
            "=x",
            "cn",
            "cn=a,",
            ",cn=a",
            "cn=a,,o=x",
            "cn=a+",
            "cn=\\C3",
            "cn=\\C3\\28",
            "cn=a\"b",
            "cn=\"open",
            "cn=\"closed\"x",
            "cn=#",
            "cn=#0g",
            "cn=#abc",
            "c_n=a",
            "1.=a",
            "01.2=a",
            "-cn=a",
            "OID.cn=a",
            "cn=a=b=\\",
            "\\",
            "é=x",
        ];
        let valid = ["cn=zz", "cn=a", "cn=a\\\\", "cn=\\\\zz", "cn=\\c3\\a9", ""];
        for g in garbage {
            assert!(parse(g).is_none(), "{g:?} parsed");
            let k = key(g);
            assert_eq!(k, g.to_ascii_lowercase(), "{g:?}: today's key");
            // No canonical key fails to parse, so this one is none of them.
            assert!(parse(&k).is_none(), "{g:?}: its key {k:?} parses");
            for v in valid {
                assert_ne!(k, key(v), "{g:?} and {v:?}");
            }
        }
        assert_eq!(key(""), "", "the empty DN");
        assert_eq!(key("   "), "");
        assert_eq!(key("x"), "x", "not a DN");
    }

    #[test]
    fn canonical_keys_parse_to_themselves() {
        let dns = [
            "CN=R&D\\, Berlin,OU=Groups,DC=corp",
            "cn=\\ a \\ ,o=\\#x",
            "cn=a\\00\\\\b\\\"c",
            "UID=b+CN=a,O=x",
            "cn=#0401ff+cn=#0c0141",
            "cn=,o=x",
            "cn=\\E2\\82\\AC + sn=Ǆ",
        ];
        for dn in dns {
            let k = key(dn);
            assert!(parse(&k).is_some(), "{dn:?} → {k:?}");
            assert_eq!(key(&k), k, "{dn:?}");
        }
    }
}
