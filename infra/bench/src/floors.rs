//! The floors a first full sync is measured against (DESIGN.md §8: "the time
//! to merely fetch the same pages with no processing"):
//!
//! - [`fetch_only`]: the Graph pages the engine reads, fetched with the
//!   same token and page size, both streams at once as the engine reads
//!   them, each body read in full but parsed only for its next/delta link.
//!   Its page count is the minimum number of requests a full sync needs.
//! - [`fetch_and_map`]: the Graph source's own `read` loop with no store,
//!   which adds JSON parsing and mapping; what remains above it is the
//!   store's and the engine's bookkeeping.

use dirsync_shared::source::graph::{GraphSource, MAX_PAGE, PageLinks};
use dirsync_shared::source::{DirectorySource, Next, ReadFrom, Stream};

/// Pages read per stream.
#[derive(Clone, Copy, Debug)]
pub struct Pages {
    pub users: u64,
    pub groups: u64,
}

impl Pages {
    pub fn total(&self) -> u64 {
        self.users + self.groups
    }
}

/// The access token the Graph source signs in with (cached after the first
/// call, which the benchmark makes before any case).
pub async fn token(source: &GraphSource) -> Result<String, String> {
    let client = source.client();
    let t = &client.target;
    let token = client
        .tokens()
        .token(&t.authority_url, &t.tenant, &t.scope(), &t.credential)
        .await
        .map_err(|e| e.to_string())?;
    Ok(token.value.expose().to_owned())
}

pub async fn fetch_only(source: &GraphSource) -> Result<Pages, String> {
    let token = &token(source).await?;
    let http = reqwest::Client::new();
    let first = |stream| source.first_url(stream).map_err(|e| e.to_string());
    let (users, groups) = (first("users")?, first("groups")?);
    let (users, groups) = tokio::join!(follow(&http, token, users), follow(&http, token, groups));
    Ok(Pages {
        users: users?,
        groups: groups?,
    })
}

/// Follows `@odata.nextLink` from `url` to the deltaLink; returns the pages.
async fn follow(http: &reqwest::Client, token: &str, mut url: String) -> Result<u64, String> {
    let mut pages = 0;
    loop {
        let body = http
            .get(&url)
            .bearer_auth(token)
            .header("Prefer", format!("odata.maxpagesize={MAX_PAGE}"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        pages += 1;
        let links: PageLinks = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        match links {
            PageLinks {
                next: Some(next), ..
            } => url = next,
            PageLinks { delta: Some(_), .. } => return Ok(pages),
            _ => return Err("a Graph page had neither nextLink nor deltaLink".into()),
        }
    }
}

pub async fn fetch_and_map(source: &GraphSource) -> Result<Pages, String> {
    let (users, groups) = tokio::join!(
        read_all(source, Stream::Users),
        read_all(source, Stream::Groups)
    );
    Ok(Pages {
        users: users?,
        groups: groups?,
    })
}

/// Reads a stream in full through the source, dropping what it maps.
async fn read_all(source: &GraphSource, stream: Stream) -> Result<u64, String> {
    let mut from = ReadFrom::Full;
    let mut pages = 0;
    loop {
        let page = source
            .read(stream, &from)
            .await
            .map_err(|e| e.to_string())?;
        pages += 1;
        match page.next {
            Next::Page(next) => from = ReadFrom::Continue(next),
            Next::Done { .. } => return Ok(pages),
        }
    }
}
