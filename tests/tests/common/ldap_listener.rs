//! A throw-away LDAP server on loopback for faults no real server shows on
//! demand: it serves a small Domino-style directory (bind, paged subtree
//! searches, base reads, `member` in ranges of two) and can stall in the
//! middle of a search or repeat a range. It speaks just enough BER for the
//! requests the LDAP source sends; a minimal encoder is written here so the
//! tests need no LDAP server crate.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PAGED_RESULTS: &[u8] = b"1.2.840.113556.1.4.319";
/// Members are handed out this many at a time, as AD does with 1,500.
const RANGE: usize = 2;

#[derive(Debug, Clone)]
pub struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<String>)>,
}

impl Entry {
    pub fn new(dn: &str, attrs: &[(&str, &[&str])]) -> Self {
        Self {
            dn: dn.to_owned(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    fn is(&self, class: &str) -> bool {
        self.attrs
            .iter()
            .any(|(k, v)| k == "objectClass" && v.iter().any(|c| c == class))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answers this many entries of a people search, then nothing more
    /// (the connection stays open).
    StallAfter(usize),
    /// Asked for the members after the first range, answers the first
    /// range again.
    RepeatRange,
    /// Ends each people search's page with this result code (a server
    /// limit: 3 timeLimitExceeded, 4 sizeLimitExceeded, 11 adminLimitExceeded).
    Answer(u8),
}

pub struct Listener {
    pub url: String,
    entries: Arc<Mutex<Vec<Entry>>>,
    fault: Arc<Mutex<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub async fn start(entries: Vec<Entry>) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ldap://{}", socket.local_addr().unwrap());
        let fault = Arc::new(Mutex::new(Fault::None));
        let entries = Arc::new(Mutex::new(entries));
        let (e, f) = (entries.clone(), fault.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = socket.accept().await {
                tokio::spawn(serve(conn, e.clone(), f.clone()));
            }
        });
        Self {
            url,
            entries,
            fault,
            task,
        }
    }

    /// Deletes an entry: every later page shifts back by one.
    pub fn remove(&self, dn: &str) {
        self.entries.lock().unwrap().retain(|e| e.dn != dn);
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

// ---- BER, as little as LDAP needs -------------------------------------------

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 128 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(body);
    out
}

fn octets(s: &[u8]) -> Vec<u8> {
    tlv(0x04, s)
}

fn seq(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// The first TLV of `buf`: its tag, body and what follows; `None` when
/// `buf` does not hold all of it yet.
fn read_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        let len = rest
            .get(..n)?
            .iter()
            .fold(0usize, |l, b| (l << 8) | *b as usize);
        (len, &rest[n..])
    };
    Some((tag, rest.get(..len)?, &rest[len..]))
}

fn children(mut body: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((tag, inner, rest)) = read_tlv(body) {
        out.push((tag, inner));
        body = rest;
    }
    out
}

// ---- the protocol -----------------------------------------------------------

struct Search {
    base: String,
    subtree: bool,
    filter: Vec<u8>,
    attrs: Vec<String>,
    /// The paged-results cookie (an offset), when the search is paged.
    paged: Option<(usize, usize)>,
}

fn parse_search(op: &[u8], controls: Option<&[u8]>) -> Search {
    let parts = children(op);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let attrs = children(parts[7].1).iter().map(|(_, a)| text(a)).collect();
    let paged = controls.and_then(|c| {
        children(c).into_iter().find_map(|(_, control)| {
            let fields = children(control);
            (fields[0].1 == PAGED_RESULTS).then(|| {
                let value = fields.last().unwrap().1;
                let (_, inner, _) = read_tlv(value).unwrap();
                let v = children(inner);
                let size = v[0].1.iter().fold(0usize, |n, b| (n << 8) | *b as usize);
                let offset = text(v[1].1).parse().unwrap_or(0);
                (size, offset)
            })
        })
    });
    Search {
        base: text(parts[0].1),
        subtree: parts[1].1 != [0],
        filter: parts[6].1.to_vec(),
        attrs,
        paged,
    }
}

fn message(id: &[u8], op: Vec<u8>, controls: Option<Vec<u8>>) -> Vec<u8> {
    let mut parts = vec![tlv(0x02, id), op];
    parts.extend(controls);
    seq(0x30, &parts)
}

fn result(tag: u8, rc: u8) -> Vec<u8> {
    seq(tag, &[tlv(0x0a, &[rc]), octets(b""), octets(b"")])
}

fn entry_message(id: &[u8], dn: &str, attrs: &[(String, Vec<String>)]) -> Vec<u8> {
    let attrs: Vec<Vec<u8>> = attrs
        .iter()
        .map(|(k, vs)| {
            let vals: Vec<Vec<u8>> = vs.iter().map(|v| octets(v.as_bytes())).collect();
            seq(0x30, &[octets(k.as_bytes()), seq(0x31, &vals)])
        })
        .collect();
    let op = seq(0x64, &[octets(dn.as_bytes()), seq(0x30, &attrs)]);
    message(id, op, None)
}

/// `member` as AD hands it out: the range from `start`, `*` on the last.
fn member_range(all: &[String], start: usize) -> (String, Vec<String>) {
    let end = (start + RANGE).min(all.len());
    let last = if end == all.len() {
        "*".to_owned()
    } else {
        (end - 1).to_string()
    };
    (
        format!("member;range={start}-{last}"),
        all[start..end].to_vec(),
    )
}

/// The attributes sent for an entry: `member` in ranges, from where asked
/// (or the first range again, under the fault).
fn answer_attrs(e: &Entry, asked: &[String], fault: Fault) -> Vec<(String, Vec<String>)> {
    let from = asked
        .iter()
        .find_map(|a| a.strip_prefix("member;range="))
        .and_then(|r| r.split('-').next()?.parse().ok())
        .unwrap_or(0);
    let from = if fault == Fault::RepeatRange { 0 } else { from };
    let mut out = Vec::new();
    for (k, v) in &e.attrs {
        if k == "member" {
            out.push(member_range(v, from));
        } else if !asked.iter().any(|a| a.starts_with("member;range=")) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

fn matches(e: &Entry, s: &Search) -> bool {
    if !s.subtree {
        return e.dn.eq_ignore_ascii_case(&s.base);
    }
    let has = |w: &[u8]| s.filter.windows(w.len()).any(|x| x == w);
    (has(b"dominoPerson") && e.is("dominoPerson")) || (has(b"dominoGroup") && e.is("dominoGroup"))
}

async fn serve(mut conn: TcpStream, entries: Arc<Mutex<Vec<Entry>>>, fault: Arc<Mutex<Fault>>) {
    let mut buf = Vec::new();
    let mut people_sent = 0;
    loop {
        let Some((_, msg, rest)) = read_tlv(&buf) else {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let used = buf.len() - rest.len();
        let parts: Vec<(u8, Vec<u8>)> = children(msg)
            .into_iter()
            .map(|(t, b)| (t, b.to_vec()))
            .collect();
        buf.drain(..used);
        let (id, (op_tag, op)) = (&parts[0].1, (&parts[1].0, &parts[1].1));
        let controls = parts.get(2).map(|(_, c)| c.as_slice());
        let out = match op_tag {
            0x60 => message(id, result(0x61, 0), None),
            0x42 => return,
            0x63 => {
                let s = parse_search(op, controls);
                let f = *fault.lock().unwrap();
                let found: Vec<Entry> = {
                    let entries = entries.lock().unwrap();
                    entries.iter().filter(|e| matches(e, &s)).cloned().collect()
                };
                let (size, offset) = s.paged.unwrap_or((found.len().max(1), 0));
                let page = &found[offset.min(found.len())..(offset + size).min(found.len())];
                let mut out = Vec::new();
                for e in page {
                    if let Fault::StallAfter(n) = f
                        && e.is("dominoPerson")
                        && people_sent >= n
                    {
                        conn.write_all(&out).await.ok();
                        // Silence, with the connection open.
                        std::future::pending::<()>().await;
                    }
                    people_sent += e.is("dominoPerson") as usize;
                    out.extend(entry_message(id, &e.dn, &answer_attrs(e, &s.attrs, f)));
                }
                let next = offset + page.len();
                let cookie = if next < found.len() {
                    next.to_string()
                } else {
                    String::new()
                };
                let control = s.paged.map(|_| {
                    let value = seq(0x30, &[tlv(0x02, &[0]), octets(cookie.as_bytes())]);
                    seq(0xa0, &[seq(0x30, &[octets(PAGED_RESULTS), octets(&value)])])
                });
                let rc = match f {
                    Fault::Answer(rc) if s.filter.windows(12).any(|w| w == b"dominoPerson") => rc,
                    _ => 0,
                };
                out.extend(message(id, result(0x65, rc), control));
                out
            }
            // Abandon and anything else: no answer.
            _ => continue,
        };
        if conn.write_all(&out).await.is_err() {
            return;
        }
    }
}
