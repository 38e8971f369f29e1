//! Checking a `.pth` (torch.save zip) before anything is read from it into memory.
//!
//! burn-store's pickle reader executes no code, but it admits any global it does not call,
//! and it materialises a tensor view of up to 10 GiB whatever the file's size: a stride-0
//! view of a one-element storage is a ~1 kB file that asks for gigabytes. This module walks
//! every opcode of the pickle once, before burn-store sees the file, and refuses:
//! - any `GLOBAL`/`STACK_GLOBAL` not on an exact allow-list of the callables a state dict
//!   needs (wherever it appears, even if the final object never refers to it);
//! - any opcode a state dict does not use (`INST`, `OBJ`, extension codes, …);
//! - a storage whose declared size is larger than its record in the archive;
//! - a tensor view that reaches past its storage, or has more elements than its storage
//!   (stride 0 or overlapping strides): so no tensor is ever larger than the file.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use crate::ZooError;

/// The only globals a torch.save'd state dict references.
const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
];

/// Bytes per element of a storage class.
fn element_size(storage: &str) -> usize {
    match storage {
        "DoubleStorage" | "LongStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        _ => 1,
    }
}

/// What the scanner needs to know of a pickled object; contents of containers are not kept.
#[derive(Clone, Debug)]
enum Obj {
    Mark,
    Int(i64),
    Str(Rc<str>),
    Global(Rc<str>, Rc<str>),
    Tuple(Rc<Vec<Obj>>),
    /// A storage from a persistent id: its key and declared element count.
    Storage {
        key: Rc<str>,
        numel: usize,
    },
    /// Anything else (None, bools, floats, bytes, containers, tensors).
    Other,
}

/// Checks the torch.save zip `bytes` (read from `path`); see the module documentation.
pub(crate) fn check(path: &Path, bytes: &[u8]) -> Result<(), ZooError> {
    let bad = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        bad(format!(
            "not a torch.save zip archive ({e}); files saved by PyTorch before 1.6 are not read"
        ))
    })?;
    let mut pickle_name = None;
    let mut records = HashMap::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("corrupt archive: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("corrupt archive: {e}")))?
            .to_string();
        if name.ends_with("/data.pkl") || name == "data.pkl" {
            pickle_name = Some(name.clone());
        }
        if let Some((_, key)) = name.rsplit_once("/data/") {
            records.insert(key.to_string(), entry.size());
        }
    }
    let pickle_name = pickle_name.ok_or_else(|| bad("the archive has no data.pkl".into()))?;
    let entry = zip
        .by_name(&pickle_name)
        .map_err(|e| bad(format!("corrupt archive: {e}")))?;
    // A compressed pickle may claim any size: read no more than the file could hold.
    let mut pickle = Vec::new();
    entry
        .take(bytes.len() as u64 + 1)
        .read_to_end(&mut pickle)
        .map_err(|e| bad(format!("cannot read data.pkl: {e}")))?;
    if pickle.len() > bytes.len() {
        return Err(bad("data.pkl inflates beyond the file's size".into()));
    }
    Scanner {
        pickle: &pickle,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        records: &records,
    }
    .run()
    .map_err(bad)
}

struct Scanner<'a> {
    pickle: &'a [u8],
    pos: usize,
    stack: Vec<Obj>,
    memo: HashMap<u32, Obj>,
    /// Archive record sizes by storage key.
    records: &'a HashMap<String, u64>,
}

type Res<T> = Result<T, String>;

impl Scanner<'_> {
    fn take(&mut self, n: usize) -> Res<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.pickle.len())
            .ok_or("the pickle is truncated")?;
        let s = &self.pickle[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Res<u64> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    fn len(&mut self, n: usize) -> Res<usize> {
        usize::try_from(self.uint(n)?).map_err(|_| "a length in the pickle is too large".into())
    }

    fn line(&mut self) -> Res<String> {
        let rest = &self.pickle[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle is truncated")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Res<Obj> {
        let len = self.len(n)?;
        let b = self.take(len)?;
        Ok(Obj::Str(String::from_utf8_lossy(b).into()))
    }

    fn pop(&mut self) -> Res<Obj> {
        self.stack
            .pop()
            .ok_or_else(|| "the pickle pops an empty stack".into())
    }

    /// Pops up to the topmost MARK, returning what was above it.
    fn pop_mark(&mut self) -> Res<Vec<Obj>> {
        let at = self
            .stack
            .iter()
            .rposition(|o| matches!(o, Obj::Mark))
            .ok_or("the pickle has no MARK where one is needed")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn global(&mut self, module: &str, name: &str) -> Res<Obj> {
        if !ALLOWED.contains(&(module, name)) {
            return Err(format!(
                "the pickle references {module}.{name}, which a state dict never does; refused (nothing was executed)"
            ));
        }
        Ok(Obj::Global(module.into(), name.into()))
    }

    fn run(mut self) -> Res<()> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return Ok(()),
                b'(' => self.stack.push(Obj::Mark),
                b')' => self.stack.push(Obj::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Obj::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("the pickle pops an empty stack".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Obj::Tuple(Rc::new(items)));
                }
                b']' | b'}' | 0x8f | b'N' | 0x88 | 0x89 => self.stack.push(Obj::Other),
                b'l' | b'd' | 0x91 => {
                    self.pop_mark()?;
                    self.stack.push(Obj::Other);
                }
                b'a' => {
                    self.pop()?;
                }
                b's' => {
                    self.pop()?;
                    self.pop()?;
                }
                b'e' | b'u' | 0x90 => {
                    self.pop_mark()?;
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.stack.push(Obj::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.stack.push(Obj::Int(v as i64));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.stack.push(Obj::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.len(1)?
                    } else {
                        self.len(4)?
                    };
                    let b = self.take(n)?;
                    let v = if n <= 8 && !b.is_empty() {
                        let mut buf = if b[n - 1] & 0x80 != 0 {
                            [0xff; 8]
                        } else {
                            [0; 8]
                        };
                        buf[..n].copy_from_slice(b);
                        Obj::Int(i64::from_le_bytes(buf))
                    } else if b.is_empty() {
                        Obj::Int(0)
                    } else {
                        Obj::Other
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Obj::Other);
                }
                b'X' | b'T' => {
                    let s = self.string(4)?;
                    self.stack.push(s);
                }
                0x8c | b'U' => {
                    let s = self.string(1)?;
                    self.stack.push(s);
                }
                0x8d => {
                    let s = self.string(8)?;
                    self.stack.push(s);
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.len(4)?,
                        b'C' => self.len(1)?,
                        _ => self.len(8)?,
                    };
                    self.take(n)?;
                    self.stack.push(Obj::Other);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(module), Obj::Str(name)) = (module, name) else {
                        return Err("STACK_GLOBAL expects two strings".into());
                    };
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.storage(&pid)?;
                    self.stack.push(storage);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.call(&callable, &args)?;
                    self.stack.push(result);
                }
                b'b' => {
                    self.pop()?;
                }
                b'q' | b'r' => {
                    let n = if op == b'q' { 1 } else { 4 };
                    let key = self.uint(n)? as u32;
                    let top = self.stack.last().cloned().ok_or("MEMO of an empty stack")?;
                    self.memo.insert(key, top);
                }
                0x94 => {
                    let key = self.memo.len() as u32;
                    let top = self.stack.last().cloned().ok_or("MEMO of an empty stack")?;
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let n = if op == b'h' { 1 } else { 4 };
                    let key = self.uint(n)? as u32;
                    let v = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| format!("the pickle reads memo {key}, never stored"))?;
                    self.stack.push(v);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.stack.last().cloned().ok_or("DUP of an empty stack")?;
                    self.stack.push(top);
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode: 0x{other:02x} (a state dict does not use it); refused (nothing was executed)"
                    ));
                }
            }
        }
    }

    /// A persistent id `('storage', torch.<T>Storage, key, location, numel)`: the declared
    /// size must fit in the archive record holding the storage's bytes.
    fn storage(&self, pid: &Obj) -> Res<Obj> {
        let Obj::Tuple(t) = pid else {
            return Err("a persistent id that is not a storage tuple".into());
        };
        let (Some(Obj::Str(kind)), Some(Obj::Global(_, class)), Some(key), Some(Obj::Int(numel))) =
            (t.first(), t.get(1), t.get(2), t.get(4))
        else {
            return Err(
                "a persistent id that is not ('storage', type, key, location, numel)".into(),
            );
        };
        let key: Rc<str> = match key {
            Obj::Str(s) => s.clone(),
            Obj::Int(i) => i.to_string().into(),
            _ => return Err("a storage key that is not a string".into()),
        };
        if &**kind != "storage" || !class.ends_with("Storage") {
            return Err(format!("a persistent id of kind '{kind}' is not a storage"));
        }
        let numel =
            usize::try_from(*numel).map_err(|_| format!("storage {key} has {numel} elements"))?;
        let record = self
            .records
            .get(&*key)
            .ok_or_else(|| format!("storage {key} has no record in the archive"))?;
        let bytes = numel
            .checked_mul(element_size(class))
            .ok_or_else(|| format!("storage {key} declares too many elements ({numel})"))?;
        if bytes as u64 > *record {
            return Err(format!(
                "storage {key} declares {numel} elements ({bytes} bytes) but its record holds {record} bytes"
            ));
        }
        Ok(Obj::Storage { key, numel })
    }

    fn call(&self, callable: &Obj, args: &Obj) -> Res<Obj> {
        let Obj::Global(module, name) = callable else {
            return Ok(Obj::Other);
        };
        match (&**module, &**name) {
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => {
                let Obj::Tuple(a) = args else {
                    return Err(format!("{name} called without an argument tuple"));
                };
                view_fits(a)?;
                Ok(Obj::Other)
            }
            _ => Ok(Obj::Other),
        }
    }
}

fn dims(o: Option<&Obj>, what: &str) -> Res<Vec<usize>> {
    let Some(Obj::Tuple(t)) = o else {
        return Err(format!("a tensor's {what} is not a tuple"));
    };
    t.iter()
        .map(|d| match d {
            Obj::Int(i) => usize::try_from(*i).map_err(|_| format!("a tensor's {what} holds {i}")),
            _ => Err(format!("a tensor's {what} holds a non-integer")),
        })
        .collect()
}

/// `(storage, offset, size, stride, …)`: the view must lie inside its storage and have no
/// more elements than the storage (a stride-0 or overlapping view would make a tensor larger
/// than the file from a few bytes).
fn view_fits(args: &[Obj]) -> Res<()> {
    let Some(Obj::Storage { key, numel }) = args.first() else {
        return Err("a tensor rebuilt from something other than a storage".into());
    };
    let Some(Obj::Int(offset)) = args.get(1) else {
        return Err(format!(
            "tensor on storage {key}: the offset is not an integer"
        ));
    };
    let offset = usize::try_from(*offset)
        .map_err(|_| format!("tensor on storage {key}: offset {offset}"))?;
    let size = dims(args.get(2), "size")?;
    let stride = dims(args.get(3), "stride")?;
    if size.len() != stride.len() {
        return Err(format!(
            "tensor on storage {key}: size {size:?} and stride {stride:?} differ in rank"
        ));
    }
    let overflow = || format!("tensor on storage {key}: size {size:?} overflows");
    let elements = size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    if elements == 0 {
        return Ok(());
    }
    let extent = size
        .iter()
        .zip(&stride)
        .try_fold(offset, |acc, (&d, &s)| {
            acc.checked_add((d - 1).checked_mul(s)?)
        })
        .and_then(|e| e.checked_add(1))
        .ok_or_else(overflow)?;
    if extent > *numel || elements > *numel {
        return Err(format!(
            "tensor of size {size:?} and stride {stride:?} at offset {offset} needs {elements} elements reaching element {extent} of storage {key}, which holds {numel}; stride-0 or overlapping views are refused"
        ));
    }
    Ok(())
}
