//! URLs compared as what they address — scheme, host, port and path segments — never as
//! strings: an allowed `https://github.com/org/team-a` must not admit
//! `https://github.com/org/team-a-evil`, `https://github.com.evil.example/org/team-a` or
//! `https://github.com/org/team-a/../team-b`.

/// A URL (or a policy's pattern of one) taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Lower case; `None` for a pattern written without one (it matches any scheme).
    pub scheme: Option<String>,
    /// Lower case, without a trailing dot; a pattern's labels may hold `*`.
    pub host: String,
    pub port: Option<u16>,
    /// Percent-decoded, `.` and `..` resolved, empty segments and a final `.git` dropped.
    pub segments: Vec<String>,
}

impl Location {
    /// Parses `text`; `default_scheme` stands in when it has none (a Bucket endpoint, an
    /// image name). Userinfo, query and fragment do not change where it points and are dropped.
    pub fn parse(text: &str, default_scheme: Option<&str>) -> Result<Location, String> {
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it is empty or holds white space".into());
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (default_scheme, text),
        };
        let scheme = match scheme {
            Some(s) if is_scheme(s) => Some(s.to_ascii_lowercase()),
            Some(s) => return Err(format!("`{s}` is not a URL scheme")),
            None => None,
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(authority_end);
        let path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
        if authority.contains('\\') {
            return Err("a backslash in the host".into());
        }
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_port(host_port)?;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err("it names no host".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*' | ':'))
        {
            return Err(format!("`{host}` is not a host name"));
        }
        Ok(Location {
            scheme,
            host,
            port,
            segments: segments(path)?,
        })
    }

    /// Whether `url` is this pattern's location or below it: same scheme (unless the pattern
    /// names none), same host (a `*` label matches one label), same port (an unwritten port is
    /// the scheme's default), and the pattern's path segments are the first of `url`'s (`*`
    /// inside a segment matches within that segment only).
    pub fn allows(&self, url: &Location) -> bool {
        let scheme_ok = self
            .scheme
            .as_ref()
            .is_none_or(|s| Some(s) == url.scheme.as_ref());
        let scheme = self.scheme.as_deref().or(url.scheme.as_deref());
        let port_ok =
            self.port.or_else(|| default_port(scheme)) == url.port.or_else(|| url.default_port());
        let host_labels: Vec<&str> = self.host.split('.').collect();
        let url_labels: Vec<&str> = url.host.split('.').collect();
        let host_ok = host_labels.len() == url_labels.len()
            && host_labels
                .iter()
                .zip(&url_labels)
                .all(|(p, l)| crate::policy::glob_match(p, l));
        let path_ok = self.segments.len() <= url.segments.len()
            && self
                .segments
                .iter()
                .zip(&url.segments)
                .all(|(p, s)| crate::policy::glob_match(p, s));
        scheme_ok && port_ok && host_ok && path_ok
    }

    fn default_port(&self) -> Option<u16> {
        default_port(self.scheme.as_deref())
    }
}

/// An image reference (`ghcr.io/org/app`, `nginx`) as the registry URL it is pulled from,
/// with Docker Hub's implied host and `library/` spelled out, as container clients do.
pub fn image_location(image: &str) -> Result<Location, String> {
    let first = image.split('/').next().unwrap_or("");
    let has_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        image.to_owned()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    let mut location = Location::parse(&full, Some("oci"))?;
    if matches!(
        location.host.as_str(),
        "index.docker.io" | "registry-1.docker.io"
    ) {
        location.host = "docker.io".into();
    }
    Ok(location)
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme? {
        "http" => Some(80),
        // OCI registries and S3-style endpoints are spoken to over HTTPS.
        "https" | "oci" => Some(443),
        "ssh" => Some(22),
        _ => None,
    }
}

/// `host[:port]`, `[v6]` and `[v6]:port`.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .ok_or_else(|| "an unclosed `[` in the host".to_owned())?;
        match rest {
            "" => return Ok((host, None)),
            _ => (
                host,
                rest.strip_prefix(':')
                    .ok_or_else(|| format!("`{rest}` after the host"))?,
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => return Ok((authority, None)),
        }
    };
    if port.is_empty() {
        return Ok((host, None));
    }
    port.parse::<u16>()
        .map(|p| (host, Some(p)))
        .map_err(|_| format!("`{port}` is not a port"))
}

/// The path's segments, decoded and resolved as RFC 3986 does before a request.
fn segments(path: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = percent_decode(raw)?;
        if segment.contains('/') || segment.contains('\\') {
            return Err(format!("the path segment `{raw}` encodes a separator"));
        }
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    if let Some(last) = out.last_mut()
        && let Some(repository) = last.strip_suffix(".git")
        && !repository.is_empty()
    {
        *last = repository.to_owned();
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{text}` has a broken %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` decodes to invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        let pattern = Location::parse(pattern, None).unwrap();
        let url = Location::parse(url, None).unwrap();
        pattern.allows(&url)
    }

    #[test]
    fn a_path_prefix_is_whole_segments() {
        let team = "https://github.com/org/team-a";
        assert!(allows(team, "https://github.com/org/team-a"));
        assert!(allows(team, "https://github.com/org/team-a/"));
        assert!(allows(team, "https://github.com/org/team-a.git"));
        assert!(allows(team, "https://github.com/org/team-a/sub/repo"));
        assert!(allows(team, "https://GitHub.com./org/team-a?ref=main#x"));
        assert!(!allows(team, "https://github.com/org/team-a-evil"));
        assert!(!allows(team, "https://github.com/org/team-a/../team-b"));
        assert!(!allows(team, "https://github.com/org/team-a/%2E%2E/team-b"));
        assert!(!allows(team, "https://github.com/org"));
    }

    #[test]
    fn the_host_is_the_whole_host_and_the_port_counts() {
        let team = "https://github.com/org/team-a";
        assert!(!allows(team, "https://github.com.evil.example/org/team-a"));
        assert!(!allows(team, "https://evil.example/github.com/org/team-a"));
        assert!(!allows(team, "https://github.com@evil.example/org/team-a"));
        assert!(allows(team, "https://token@github.com/org/team-a"));
        assert!(allows(team, "https://github.com:443/org/team-a"));
        assert!(!allows(team, "https://github.com:8443/org/team-a"));
        assert!(!allows(team, "http://github.com/org/team-a"));
        assert!(!allows(team, "ssh://git@github.com/org/team-a"));
        assert!(allows("github.com/org", "ssh://git@github.com/org/app"));
        assert!(!allows(
            "github.com/org",
            "ssh://git@github.com:2222/org/app"
        ));
        assert!(allows("https://*.example.com", "https://git.example.com/x"));
        assert!(!allows(
            "https://*.example.com",
            "https://a.b.example.com/x"
        ));
    }

    #[test]
    fn a_star_matches_inside_one_segment() {
        let team = "https://github.com/org/team-a-*";
        assert!(allows(team, "https://github.com/org/team-a-app"));
        assert!(!allows(team, "https://github.com/org/team-b-app"));
        assert!(!allows(
            "https://github.com/org/*",
            "https://github.com/other/x"
        ));
    }

    #[test]
    fn what_does_not_parse_is_an_error() {
        for bad in [
            "",
            "https://",
            "https://github.com:http/org",
            "https://git hub.com/x",
            "https://github.com\\@evil.example/x",
            "https://github.com/a%2Fb",
            "https://github.com/%zz",
            "1http://x",
        ] {
            assert!(Location::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_are_registry_locations() {
        let org = Location::parse("oci://ghcr.io/org/team-a", None).unwrap();
        assert!(org.allows(&image_location("ghcr.io/org/team-a/app").unwrap()));
        assert!(!org.allows(&image_location("ghcr.io/org/team-a-evil/app").unwrap()));
        let hub = Location::parse("oci://docker.io/library", None).unwrap();
        assert!(hub.allows(&image_location("nginx").unwrap()));
        assert!(hub.allows(&image_location("index.docker.io/library/nginx").unwrap()));
        assert!(!hub.allows(&image_location("fluxcd/flux").unwrap()));
        let local = image_location("localhost:5000/app").unwrap();
        assert_eq!((local.host.as_str(), local.port), ("localhost", Some(5000)));
    }
}
