//! Writing `torch.save` files without torch: a stored (uncompressed) zip holding a protocol-2
//! pickle and one raw storage per tensor, as `torch.save` lays them out. Used to make `.pth`
//! fixtures of whole state dicts, and hostile pickles.

use std::path::Path;

/// CRC-32 (IEEE), as the zip format stores it.
fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| (0..8).fold(n, |c, _| (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg())))
        .collect();
    !data.iter().fold(!0u32, |crc, &b| {
        (crc >> 8) ^ table[((crc ^ u32::from(b)) & 0xff) as usize]
    })
}

/// A zip archive of stored (uncompressed) entries.
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    fn u16le(v: &mut Vec<u8>, x: usize) {
        v.extend_from_slice(&u16::try_from(x).unwrap().to_le_bytes());
    }
    fn u32le(v: &mut Vec<u8>, x: usize) {
        v.extend_from_slice(&u32::try_from(x).unwrap().to_le_bytes());
    }
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len();
        let crc = crc32(data) as usize;
        // local file header: version 2.0, no flags, stored, 1980-01-01 00:00
        u32le(&mut out, 0x0403_4b50);
        for x in [20, 0, 0, 0, 0x21] {
            u16le(&mut out, x);
        }
        for x in [crc, data.len(), data.len()] {
            u32le(&mut out, x);
        }
        u16le(&mut out, name.len());
        u16le(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // central directory record
        u32le(&mut central, 0x0201_4b50);
        for x in [20, 20, 0, 0, 0, 0x21] {
            u16le(&mut central, x);
        }
        for x in [crc, data.len(), data.len()] {
            u32le(&mut central, x);
        }
        for x in [name.len(), 0, 0, 0, 0] {
            u16le(&mut central, x);
        }
        u32le(&mut central, 0);
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len();
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    for x in [0, 0, entries.len(), entries.len()] {
        u16le(&mut out, x);
    }
    u32le(&mut out, central.len());
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    out
}

/// Pickle `BINUNICODE` of `s`.
pub fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend_from_slice(&u32::try_from(s.len()).unwrap().to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// Pickle `GLOBAL module.name` (protocol 0-3 spelling).
pub fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

/// Pickle `BININT` of `i`.
fn int(i: usize) -> Vec<u8> {
    let mut v = vec![b'J'];
    v.extend_from_slice(&i32::try_from(i).unwrap().to_le_bytes());
    v
}

/// A pickled tuple of ints.
fn int_tuple(values: &[usize]) -> Vec<u8> {
    let mut v = vec![b'('];
    for &x in values {
        v.extend(int(x));
    }
    v.push(b't');
    v
}

/// `torch._utils._rebuild_tensor_v2(<FloatStorage `key` of numel>, 0, shape, strides, False,
/// OrderedDict())`: a contiguous f32 tensor whose bytes are the archive's `data/<key>`.
pub fn float_tensor(key: &str, shape: &[usize]) -> Vec<u8> {
    let numel = shape.iter().product();
    let strides: Vec<usize> = (0..shape.len())
        .map(|i| shape[i + 1..].iter().product())
        .collect();
    let mut v = global("torch._utils", "_rebuild_tensor_v2");
    v.extend_from_slice(b"((");
    v.extend(unicode("storage"));
    v.extend(global("torch", "FloatStorage"));
    v.extend(unicode(key));
    v.extend(unicode("cpu"));
    v.extend(int(numel));
    v.extend_from_slice(b"tQ"); // TUPLE, BINPERSID
    v.extend(int(0));
    v.extend(int_tuple(shape));
    v.extend(int_tuple(&strides));
    v.push(0x89); // NEWFALSE
    v.extend(global("collections", "OrderedDict"));
    v.extend_from_slice(b")RtR"); // OrderedDict(), TUPLE, REDUCE
    v
}

/// Writes a `torch.save` zip of `pickle` and the named raw storages.
pub fn write_archive(path: &Path, pickle: &[u8], storages: &[(String, Vec<u8>)]) {
    let mut entries: Vec<(String, &[u8])> = vec![
        ("archive/data.pkl".into(), pickle),
        ("archive/byteorder".into(), b"little"),
    ];
    for (key, bytes) in storages {
        entries.push((format!("archive/data/{key}"), bytes));
    }
    entries.push(("archive/version".into(), b"3\n"));
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    std::fs::write(path, stored_zip(&refs)).unwrap();
}

/// Writes `tensors` (name, shape, f32 values) as a state dict, as `torch.save(model.state_dict())`.
pub fn write_state_dict(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut pickle = b"\x80\x02".to_vec();
    pickle.extend(global("collections", "OrderedDict"));
    pickle.extend_from_slice(b")R");
    let mut storages = Vec::new();
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        pickle.extend(unicode(name));
        pickle.extend(float_tensor(&i.to_string(), shape));
        pickle.push(b's'); // SETITEM
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        storages.push((i.to_string(), bytes));
    }
    pickle.push(b'.');
    write_archive(path, &pickle, &storages);
}
