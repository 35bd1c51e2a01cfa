//! Country (and, with a city database, city) of a request from its IP, when an
//! IP-to-location database (MaxMind format: GeoLite2-Country, GeoIP2-Country, or the
//! City editions) is configured with `TALLY_GEOIP_DB`.

use maxminddb::{geoip2, Reader};
use std::net::IpAddr;
use std::path::Path;

pub struct Geo(Reader<Vec<u8>>);

impl Geo {
    pub fn open(path: &Path) -> Result<Geo, String> {
        Reader::open_readfile(path)
            .map(Geo)
            .map_err(|e| format!("cannot open the GeoIP database {}: {e}", path.display()))
    }

    /// The ISO country code and the (English) city name of `ip`, as far as the database
    /// knows them (a country database knows no cities).
    pub fn place(&self, ip: IpAddr) -> Place {
        let Some(found) = self.0.lookup(ip).ok() else {
            return Place::default();
        };
        let Some(c) = found.decode::<geoip2::City>().ok().flatten() else {
            return Place::default();
        };
        Place {
            country: c
                .country
                .iso_code
                .filter(|cc| cc.len() == 2)
                .map(str::to_ascii_uppercase),
            city: c.city.names.english.map(str::to_string),
        }
    }
}

/// Where a request comes from, as far as it is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub country: Option<String>,
    pub city: Option<String>,
}

/// The client's address as Countly takes it: the `ip_address` parameter, else the left-most
/// `X-Forwarded-For`, else `X-Real-IP`, else the connection's peer.
pub fn client_ip(
    param: Option<&str>,
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let parse = |s: &str| s.trim().parse::<IpAddr>().ok();
    param
        .and_then(parse)
        .or_else(|| {
            forwarded_for
                .and_then(|h| h.split(',').next())
                .and_then(parse)
        })
        .or_else(|| real_ip.and_then(parse))
        .or(peer)
}

#[cfg(test)]
mod tests {
    use super::client_ip;

    #[test]
    fn client_ip_precedence() {
        let peer = "10.0.0.1".parse().ok();
        assert_eq!(
            client_ip(Some("1.2.3.4"), Some("5.6.7.8"), None, peer),
            "1.2.3.4".parse().ok()
        );
        assert_eq!(
            client_ip(None, Some("5.6.7.8, 10.1.1.1"), Some("9.9.9.9"), peer),
            "5.6.7.8".parse().ok()
        );
        assert_eq!(
            client_ip(Some("junk"), None, Some("9.9.9.9"), peer),
            "9.9.9.9".parse().ok()
        );
        assert_eq!(client_ip(None, None, None, peer), peer);
    }
}
