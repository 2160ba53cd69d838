//! No import cycle between the crate's top-level modules (ARCHITECTURE.md, "Module
//! layering"). A cycle between two modules means a helper lives in the wrong one, and it
//! makes each of them impossible to understand, test or move without the other.
//!
//! The check reads the source, not the compiler: every `crate::NAME` path in `src/**/*.rs`
//! (grouped imports `crate::{a, b::c}` included, comments excluded) is an edge from the
//! file's top-level module to `NAME`, and so is a `super::` path that climbs out of the
//! file's top-level module to the crate root. Submodules of one top-level module may refer
//! to each other freely (that is not an edge). `lib.rs` and `main.rs` only wire the modules
//! and are left out. Run it alone with `cargo nextest run --test module_graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a module to another, for the report: the file and line it is on.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[test]
fn no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(
        modules.len() > 5,
        "found only {modules:?} in src/lib.rs; the check reads `pub mod NAME;` lines"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(f).unwrap())
        })
        .collect();
    let graph = graph(&sources, &modules);
    assert!(
        graph.values().map(BTreeMap::len).sum::<usize>() > 10,
        "the graph has almost no edges, so the check is not reading the sources: {graph:?}"
    );
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "{}", report(&graph, &cycles));
}

#[test]
fn the_check_finds_a_cycle_through_any_kind_of_path() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let files = |b_to_a: &str| {
        vec![
            ("a.rs".to_string(), "use crate::b::Thing;\n".to_string()),
            ("b/mod.rs".to_string(), "mod inner;\n".to_string()),
            ("b/inner.rs".to_string(), format!("use super::Other;\n{b_to_a}\n")),
            // Comments and submodules of the same module are not edges.
            (
                "c.rs".to_string(),
                "// crate::a\n/* crate::b /* nested */ crate::a */\nconst U: &str = \"https://x\"; // crate::a\nconst R: &str = r#\"\"// \"#; // crate::b\nconst Q: char = '\"'; // crate::a\n".to_string(),
            ),
            ("d/x.rs".to_string(), "use super::y::Z; use crate::d::y;\n".to_string()),
        ]
    };
    for back in [
        "fn f() { crate::a::g() }",
        "use crate::{\n    c,\n    a::{g, h},\n};",
        "use super::super::a::g;",
    ] {
        let graph = graph(&files(back), &modules);
        let found = cycles(&graph);
        assert_eq!(
            found,
            vec![vec!["a".to_string(), "b".to_string()]],
            "{back}"
        );
        assert!(report(&graph, &found).contains("b/inner.rs:2"), "{back}");
    }
    for harmless in ["", "// crate::a::g()", "use super::a::g;", "use crate::c;"] {
        let graph = graph(&files(harmless), &modules);
        assert!(cycles(&graph).is_empty(), "{harmless:?}: {graph:?}");
        assert!(
            !graph.contains_key("c"),
            "comments and strings are not references: {graph:?}"
        );
        assert!(
            !graph.contains_key("d"),
            "a module's own submodules are not edges: {graph:?}"
        );
    }
}

/// The `pub mod NAME;` (or `mod NAME;`) lines of `lib.rs`.
fn top_level_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.trim().to_string())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file relative to `src/`: `daemon/mod.rs` → `[daemon]`,
/// `daemon/policy/sla.rs` → `[daemon, policy, sla]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last);
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// `text` with `//` line comments (doc comments included) and `/* */` block comments
/// blanked out, line breaks kept so that line numbers stay right. String literals (raw ones
/// included) are kept as they are: a `//` in `"https://..."` is not a comment.
fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
            continue;
        }
        let word_start = i == 0 || !(at(i - 1).is_alphanumeric() || at(i - 1) == '_');
        // Raw strings: r"...", r#"..."#, br#"..."#: they end at `"` and as many `#`.
        let raw_at = match (c, at(i + 1)) {
            ('r', '#' | '"') if word_start => Some(i + 1),
            ('b', 'r') if word_start && matches!(at(i + 2), '#' | '"') => Some(i + 2),
            _ => None,
        };
        if let Some(mut k) = raw_at {
            let mut hashes = 0;
            while at(k) == '#' {
                hashes += 1;
                k += 1;
            }
            if at(k) == '"' {
                let mut end = k + 1;
                while end < chars.len()
                    && !(chars[end] == '"' && (1..=hashes).all(|h| at(end + h) == '#'))
                {
                    end += 1;
                }
                let end = (end + 1 + hashes).min(chars.len());
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
        }
        if c == '"' {
            let mut end = i + 1;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            let end = (end + 1).min(chars.len());
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        // A char literal of a quote ('"') must not open a string.
        if c == '\'' && at(i + 1) == '"' && at(i + 2) == '\'' {
            out.extend(&chars[i..i + 3]);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Every top-level module each file's top-level module refers to, with where.
fn graph(files: &[(String, String)], modules: &BTreeSet<String>) -> Graph {
    let mut graph = Graph::new();
    for (rel, text) in files {
        let path = module_path(rel);
        let Some(top) = path.first().filter(|t| modules.contains(*t)) else {
            // lib.rs and main.rs.
            continue;
        };
        let code = strip_comments(text);
        for (target, offset) in references(&code, &path) {
            if target != *top && modules.contains(&target) {
                let line = code[..offset].matches('\n').count() + 1;
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .push(format!("src/{rel}:{line}"));
            }
        }
    }
    graph
}

/// The top-level modules `code` (a file at module path `path`) names, with the byte offset
/// of each path.
fn references(code: &str, path: &[String]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < code.len() {
        let starts_word = i == 0 || !ident_char(bytes[i - 1]);
        if starts_word && bytes[i..].starts_with(b"crate::") {
            let rest = &code[i + "crate::".len()..];
            out.extend(first_segments(rest).into_iter().map(|m| (m, i)));
            i += "crate::".len();
            continue;
        }
        if starts_word && bytes[i..].starts_with(b"super::") {
            // Count the `super::`s; climbing past the file's own module path lands at the
            // crate root, where the next segment is a top-level module.
            let mut rest = &code[i..];
            let mut ups = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                ups += 1;
                rest = r.trim_start();
            }
            if ups >= path.len() {
                out.extend(first_segments(rest).into_iter().map(|m| (m, i)));
            }
            i = code.len() - rest.len();
            continue;
        }
        i += 1;
    }
    out
}

/// The first path segment of `rest` (after `crate::`), or each one of a group
/// `{a, b::c, d::{e}}`.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.trim_start().strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut out = Vec::new();
    let (mut depth, mut at_start) = (0usize, true);
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_start = true,
            c if c.is_whitespace() => {}
            _ if at_start && depth == 0 => {
                at_start = false;
                out.push(ident(&group[k..]));
            }
            _ => {}
        }
    }
    out
}

/// Every cycle of the graph, as the sorted members of each strongly connected component of
/// more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

/// What a failure prints: each cycle's modules and the references between them.
fn report(graph: &Graph, cycles: &[Vec<String>]) -> String {
    let mut out = String::from(
        "import cycles between top-level modules; move the shared item into the module it belongs to (or a leaf module) so that the references go one way:\n",
    );
    for members in cycles {
        out.push_str(&format!("\ncycle: {}\n", members.join(", ")));
        for from in members {
            for (to, places) in graph.get(from).into_iter().flatten() {
                if members.contains(to) {
                    let shown: Vec<&str> = places.iter().take(5).map(String::as_str).collect();
                    let more = places.len().saturating_sub(shown.len());
                    out.push_str(&format!(
                        "  {from} -> {to}: {}{}\n",
                        shown.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        }
    }
    out
}
