//! The Redis URLs we accept, parsed once into an [`EndpointUrl`].
//!
//! - `redis://[[user]:password@]host[:port][/db]`, `rediss://…`, `redis+unix:///path`: one
//!   server, handed to the redis crate as given.
//! - `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`: the master of
//!   `service` as named by the listed sentinels (default port 26379). The credentials and the
//!   database are those of the data nodes (master and replicas); the sentinels are asked without
//!   credentials. Credentials may be percent-encoded (`%40` for `@`, `%2C` for `,`).
//! - `redis+cluster://[[user]:password@]host[:port][,host[:port]…][/]`: a Redis Cluster, found
//!   through any of the listed seed nodes (default port 6379). The credentials are those of the
//!   cluster nodes; a Cluster has only database 0, so the path may only be empty, `/` or `/0`.
//! - a plain `redis://` URL with several comma-separated hosts is refused with
//!   [`EndpointUrlError::SeveralHosts`] (say `redis+cluster://` or `redis+sentinel://`).

/// Default port of a Redis Sentinel.
pub const SENTINEL_PORT: u16 = 26379;

/// Default port of a Redis Cluster node.
pub const CLUSTER_PORT: u16 = 6379;

/// A parsed Redis URL.
#[derive(Clone, PartialEq, Eq)]
pub enum EndpointUrl {
    /// One server; the URL as given (the redis crate parses it).
    Single(String),
    /// A master found through Redis Sentinel.
    Sentinel(SentinelUrl),
    /// A Redis Cluster.
    Cluster(ClusterUrl),
}

/// The parts of a `redis+cluster://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// The seed nodes, tried in order: `(host, port)`.
    pub nodes: Vec<(String, u16)>,
    /// ACL user on the cluster nodes.
    pub username: Option<String>,
    /// Password on the cluster nodes.
    pub password: Option<String>,
}

impl ClusterUrl {
    /// The seed nodes as `redis://` URLs without credentials (the redis crate's cluster client
    /// takes the credentials separately).
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(host, port)| {
                if host.contains(':') {
                    format!("redis://[{host}]:{port}/")
                } else {
                    format!("redis://{host}:{port}/")
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The parts of a `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, asked in order: `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The monitored master's name (`sentinel monitor <name> …`).
    pub service: String,
    /// Database number on the data nodes.
    pub db: i64,
    /// ACL user on the data nodes.
    pub username: Option<String>,
    /// Password on the data nodes.
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The URL may carry a password.
            Self::Single(_) => f.write_str("Single(<url>)"),
            Self::Sentinel(s) => f.debug_tuple("Sentinel").field(s).finish(),
            Self::Cluster(c) => f.debug_tuple("Cluster").field(c).finish(),
        }
    }
}

/// Why a Redis URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointUrlError {
    /// A plain `redis://` URL naming several hosts.
    #[error(
        "a redis:// URL names one server: for a Redis Cluster say redis+cluster://h:p,h:p, \
         for Sentinel redis+sentinel://h:p,h:p/SERVICE"
    )]
    SeveralHosts,
    /// A `redis+cluster://` URL without any host.
    #[error("redis+cluster:// URL without a node")]
    MissingClusterNode,
    /// A `redis+cluster://` URL with a database other than 0 (a Cluster has only database 0).
    #[error("a Redis Cluster has only database 0, not {0:?}")]
    ClusterDb(String),
    /// A `redis+sentinel://` URL without a `/service` path.
    #[error("redis+sentinel:// URL without a service name (…/SERVICE[/DB])")]
    MissingService,
    /// A `redis+sentinel://` URL without any host.
    #[error("redis+sentinel:// URL without a sentinel host")]
    MissingSentinel,
    /// A sentinel's port is not a number in 1..=65535.
    #[error("invalid sentinel port in {0:?}")]
    InvalidPort(String),
    /// The database is not a non-negative number.
    #[error("invalid database number {0:?}")]
    InvalidDb(String),
    /// A bad percent escape or non-UTF-8 text in the credentials.
    #[error("invalid percent-encoding in the URL credentials")]
    InvalidEscape,
    /// Something after the database number.
    #[error("unexpected path segment {0:?} after the database number")]
    TrailingPath(String),
}

impl EndpointUrl {
    /// Parses `url` (see the module documentation for the forms).
    pub fn parse(url: &str) -> Result<Self, EndpointUrlError> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let scheme = scheme.to_ascii_lowercase();
        if scheme.contains("cluster") {
            return parse_cluster(rest).map(Self::Cluster);
        }
        if scheme.contains("sentinel") {
            return parse_sentinel(rest).map(Self::Sentinel);
        }
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .contains(',')
        {
            return Err(EndpointUrlError::SeveralHosts);
        }
        Ok(Self::Single(url.to_owned()))
    }
}

/// User and password of an optional `user:password` part, percent-decoded.
type Credentials = (Option<String>, Option<String>);

/// Splits `authority` into its credentials and the host list, and `rest` into authority and
/// path.
fn split_authority(rest: &str) -> Result<(Credentials, &str, &str), EndpointUrlError> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let credentials = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let user = decode(user)?;
            let pass = decode(pass)?;
            (
                (!user.is_empty()).then_some(user),
                (!pass.is_empty()).then_some(pass),
            )
        }
    };
    Ok((credentials, hosts, path))
}

fn parse_cluster(rest: &str) -> Result<ClusterUrl, EndpointUrlError> {
    let ((username, password), hosts, path) = split_authority(rest)?;
    let mut nodes = Vec::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        nodes.push(host_port(host, CLUSTER_PORT)?);
    }
    if nodes.is_empty() {
        return Err(EndpointUrlError::MissingClusterNode);
    }
    let path = path.split('?').next().unwrap_or_default();
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if let Some(db) = segments.next()
        && db != "0"
    {
        return Err(EndpointUrlError::ClusterDb(db.to_owned()));
    }
    if let Some(extra) = segments.next() {
        return Err(EndpointUrlError::TrailingPath(extra.to_owned()));
    }
    Ok(ClusterUrl {
        nodes,
        username,
        password,
    })
}

fn parse_sentinel(rest: &str) -> Result<SentinelUrl, EndpointUrlError> {
    let ((username, password), hosts, path) = split_authority(rest)?;
    let mut sentinels = Vec::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        sentinels.push(host_port(host, SENTINEL_PORT)?);
    }
    if sentinels.is_empty() {
        return Err(EndpointUrlError::MissingSentinel);
    }
    let path = path.split('?').next().unwrap_or_default();
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let service = segments
        .next()
        .ok_or(EndpointUrlError::MissingService)?
        .to_owned();
    let db = match segments.next() {
        None => 0,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| EndpointUrlError::InvalidDb(d.to_owned()))?,
    };
    if let Some(extra) = segments.next() {
        return Err(EndpointUrlError::TrailingPath(extra.to_owned()));
    }
    Ok(SentinelUrl {
        sentinels,
        service,
        db,
        username,
        password,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `default` when the port is absent.
fn host_port(text: &str, default: u16) -> Result<(String, u16), EndpointUrlError> {
    let bad = || EndpointUrlError::InvalidPort(text.to_owned());
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => default,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok((host.to_owned(), port))
}

/// Percent-decodes URL credentials.
fn decode(text: &str) -> Result<String, EndpointUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(EndpointUrlError::InvalidEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| EndpointUrlError::InvalidEscape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| EndpointUrlError::InvalidEscape)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| EndpointUrlError::InvalidEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelUrl {
        match EndpointUrl::parse(url) {
            Ok(EndpointUrl::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn single_server_urls_pass_through() {
        for url in [
            "redis://127.0.0.1:6379/",
            "redis://:pw@host/3",
            "redis+unix:///run/redis.sock",
        ] {
            assert_eq!(
                EndpointUrl::parse(url),
                Ok(EndpointUrl::Single(url.to_owned()))
            );
        }
    }

    #[test]
    fn sentinel_url_with_several_hosts_credentials_and_db() {
        let s = sentinel("redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:1/main/2");
        assert_eq!(
            s.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26380),
                ("10.0.0.2".to_owned(), SENTINEL_PORT),
                ("::1".to_owned(), 1),
            ]
        );
        assert_eq!(s.service, "main");
        assert_eq!(s.db, 2);
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(!format!("{s:?}").contains("p@ss"), "password redacted");
    }

    #[test]
    fn sentinel_url_defaults() {
        let s = sentinel("redis+sentinel://:secret@h/mymaster");
        assert_eq!(s.db, 0);
        assert_eq!(s.username, None);
        assert_eq!(s.password.as_deref(), Some("secret"));
    }

    #[test]
    fn bad_sentinel_urls_are_refused_with_a_reason() {
        let cases = [
            ("redis+sentinel://h:1", EndpointUrlError::MissingService),
            ("redis+sentinel:///svc", EndpointUrlError::MissingSentinel),
            (
                "redis+sentinel://h:0/svc",
                EndpointUrlError::InvalidPort("h:0".to_owned()),
            ),
            (
                "redis+sentinel://h/svc/x",
                EndpointUrlError::InvalidDb("x".to_owned()),
            ),
            (
                "redis+sentinel://h/svc/1/2",
                EndpointUrlError::TrailingPath("2".to_owned()),
            ),
            (
                "redis+sentinel://a:%4@h/svc",
                EndpointUrlError::InvalidEscape,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(EndpointUrl::parse(url).err(), Some(want), "{url}");
        }
    }

    #[test]
    fn several_hosts_in_a_plain_url_are_refused() {
        assert_eq!(
            EndpointUrl::parse("redis://a:1,b:2/").err(),
            Some(EndpointUrlError::SeveralHosts)
        );
    }

    #[test]
    fn cluster_urls_with_seeds_credentials_and_defaults() {
        let Ok(EndpointUrl::Cluster(c)) =
            EndpointUrl::parse("redis+cluster://u:p%2Cw@10.0.0.1:7000,h2,[::1]:7002/")
        else {
            panic!("not a cluster URL");
        };
        assert_eq!(
            c.nodes,
            vec![
                ("10.0.0.1".to_owned(), 7000),
                ("h2".to_owned(), CLUSTER_PORT),
                ("::1".to_owned(), 7002),
            ]
        );
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p,w"));
        assert!(!format!("{c:?}").contains("p,w"), "password redacted");
        assert_eq!(
            c.node_urls(),
            [
                "redis://10.0.0.1:7000/",
                "redis://h2:6379/",
                "redis://[::1]:7002/"
            ]
        );
        for url in ["redis+cluster://h:1", "redis+cluster://h:1/0"] {
            assert!(
                matches!(EndpointUrl::parse(url), Ok(EndpointUrl::Cluster(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_cluster_urls_are_refused_with_a_reason() {
        let cases = [
            ("redis+cluster:///", EndpointUrlError::MissingClusterNode),
            (
                "redis+cluster://h:1/2",
                EndpointUrlError::ClusterDb("2".to_owned()),
            ),
            (
                "redis+cluster://h:1/0/x",
                EndpointUrlError::TrailingPath("x".to_owned()),
            ),
            (
                "redis+cluster://h:70000",
                EndpointUrlError::InvalidPort("h:70000".to_owned()),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(EndpointUrl::parse(url).err(), Some(want), "{url}");
        }
    }
}
