//! The shape of an LDAP search filter (RFC 4515), checked when a connector
//! is given one: a filter the server would refuse fails at `connector add`,
//! not at the first sync.

/// Checks `filter`; the error says where it goes wrong.
pub fn check(filter: &str) -> Result<(), String> {
    let bytes = filter.trim().as_bytes();
    if bytes.is_empty() {
        return Err("is empty; leave it out to use the default".into());
    }
    let end = parse_filter(bytes, 0)?;
    if end != bytes.len() {
        return Err(format!(
            "has text after the filter ends at character {end}; wrap several conditions in (&...) or (|...)"
        ));
    }
    Ok(())
}

/// A parenthesised filter starting at `at`; returns where it ends.
fn parse_filter(s: &[u8], at: usize) -> Result<usize, String> {
    if s.get(at) != Some(&b'(') {
        return Err(format!(
            "needs \"(\" at character {at}: every condition is written (attribute=value)"
        ));
    }
    let inner = at + 1;
    let end = match s.get(inner) {
        Some(b'&' | b'|') => parse_list(s, inner + 1)?,
        Some(b'!') => parse_filter(s, inner + 1)?,
        Some(_) => parse_item(s, inner)?,
        None => return Err("ends after \"(\"".into()),
    };
    match s.get(end) {
        Some(b')') => Ok(end + 1),
        _ => Err(format!(
            "is missing a \")\" at character {end} (parentheses must balance)"
        )),
    }
}

/// One or more filters, up to the closing parenthesis.
fn parse_list(s: &[u8], mut at: usize) -> Result<usize, String> {
    if s.get(at) != Some(&b'(') {
        return Err(format!(
            "needs at least one (condition) after & or | at character {at}"
        ));
    }
    while s.get(at) == Some(&b'(') {
        at = parse_filter(s, at)?;
    }
    Ok(at)
}

/// `attribute op value` up to the closing parenthesis.
fn parse_item(s: &[u8], at: usize) -> Result<usize, String> {
    let close = s[at..]
        .iter()
        .position(|b| *b == b')')
        .map(|p| at + p)
        .ok_or_else(|| format!("is missing a \")\" for the condition at character {at}"))?;
    let item = std::str::from_utf8(&s[at..close]).map_err(|_| "is not UTF-8".to_owned())?;
    if item.contains('(') {
        return Err(format!(
            "has \"(\" inside the condition {item:?}; write it as \\28 in a value"
        ));
    }
    let op = ["~=", ">=", "<=", ":=", "="]
        .iter()
        .filter_map(|op| item.find(op).map(|i| (i, *op)))
        .min_by_key(|(i, _)| *i)
        .ok_or_else(|| format!("condition {item:?} has no operator (=, ~=, >=, <=)"))?;
    let attr = &item[..op.0];
    let value = &item[op.0 + op.1.len()..];
    let attr_ok = !attr.is_empty()
        && attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';' | ':'));
    if !attr_ok {
        return Err(format!(
            "condition {item:?} does not start with an attribute name"
        ));
    }
    check_escapes(item, value)?;
    Ok(close)
}

/// A `\` in a value starts two hex digits (RFC 4515's only escape).
fn check_escapes(item: &str, value: &str) -> Result<(), String> {
    let v = value.as_bytes();
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\\' {
            let hex = v.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err(format!(
                    "condition {item:?} has a \\ not followed by two hex digits (write \\5c for a backslash)"
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn filters_the_server_would_take_pass() {
        for f in [
            "(objectClass=user)",
            "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
            "(|(mail=*)(proxyAddresses=smtp:*))",
            "(cn=R\\26D\\2c Berlin)",
            "(memberOf=CN=All Staff,OU=Groups,DC=corp,DC=example,DC=com)",
            " (department>=A) ",
        ] {
            assert_eq!(check(f), Ok(()), "{f}");
        }
    }

    #[test]
    fn broken_filters_say_where() {
        for (f, says) in [
            ("(foo", "missing a \")\""),
            ("foo=bar", "needs \"(\""),
            ("(&)", "at least one"),
            ("(objectClass)", "no operator"),
            ("(=x)", "attribute name"),
            ("(a=b)(c=d)", "text after"),
            ("(a=b\\zz)", "two hex digits"),
            ("(&(a=b)", "missing a \")\""),
            ("", "empty"),
        ] {
            let e = check(f).unwrap_err();
            assert!(e.contains(says), "{f}: {e}");
        }
    }
}
