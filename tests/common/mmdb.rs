//! Writes a tiny MaxMind DB (IPv4, 32-bit records) mapping networks to country codes, by
//! the published format: a binary search tree, 16 zero bytes, a data section, then the
//! metadata after `\xAB\xCD\xEFMaxMind.com`. Enough to test Tally's GeoIP lookups without
//! shipping a real database.

use std::net::Ipv4Addr;

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

fn ctrl(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29);
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    ctrl(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn uint(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    ctrl(out, kind, bytes.len());
    out.extend_from_slice(bytes);
}

pub fn write(path: &std::path::Path, networks: &[(Ipv4Addr, u8, &str)]) {
    let places: Vec<(Ipv4Addr, u8, &str, Option<&str>)> = networks
        .iter()
        .map(|&(ip, prefix, cc)| (ip, prefix, cc, None))
        .collect();
    write_places(path, &places);
}

/// As [`write`], each network also with a city (English name), as a City database has.
pub fn write_places(path: &std::path::Path, networks: &[(Ipv4Addr, u8, &str, Option<&str>)]) {
    let mut data = Vec::new();
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    for &(ip, prefix, cc, city) in networks {
        let offset = data.len();
        ctrl(&mut data, 7, if city.is_some() { 2 } else { 1 });
        string(&mut data, "country");
        ctrl(&mut data, 7, 1);
        string(&mut data, "iso_code");
        string(&mut data, cc);
        if let Some(city) = city {
            string(&mut data, "city");
            ctrl(&mut data, 7, 1);
            string(&mut data, "names");
            ctrl(&mut data, 7, 1);
            string(&mut data, "en");
            string(&mut data, city);
        }
        let bits = u32::from(ip);
        let mut node = 0;
        for depth in 0..prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == prefix {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    _ => {
                        nodes.push([Rec::Empty, Rec::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Empty => count,
                Rec::Node(i) => i,
                Rec::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let m = &mut out;
    ctrl(m, 7, 9);
    string(m, "binary_format_major_version");
    uint(m, 5, &2u16.to_be_bytes());
    string(m, "binary_format_minor_version");
    uint(m, 5, &0u16.to_be_bytes());
    string(m, "build_epoch");
    uint(m, 9, &1_700_000_000u64.to_be_bytes());
    string(m, "database_type");
    string(m, "GeoLite2-Country");
    string(m, "description");
    ctrl(m, 7, 1);
    string(m, "en");
    string(m, "tally test");
    string(m, "ip_version");
    uint(m, 5, &4u16.to_be_bytes());
    string(m, "languages");
    ctrl(m, 11, 1);
    string(m, "en");
    string(m, "node_count");
    uint(m, 6, &(count as u32).to_be_bytes());
    string(m, "record_size");
    uint(m, 5, &32u16.to_be_bytes());
    std::fs::write(path, out).expect("write mmdb");
}
