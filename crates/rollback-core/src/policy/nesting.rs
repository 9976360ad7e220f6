//! How deeply a policy text nests, measured in one linear pass before it
//! reaches a parser. [`Policy::MAX_DEPTH`](super::Policy::MAX_DEPTH) says
//! what is counted. The YAML count follows the rules of libyaml's scanner
//! (the parser under `serde_yaml_ng`) for where a token starts, so that a
//! bracket it reads as text (in a quoted, plain or block scalar, or a
//! comment) is not counted, and one it reads as nesting is.

use super::PolicyFormat;

/// The line (from 1) at which `text` first nests deeper than `limit`.
pub(super) fn too_deep(text: &str, format: PolicyFormat, limit: usize) -> Option<usize> {
    let b = text.as_bytes();
    match format {
        PolicyFormat::Json => brackets(b, limit, false),
        PolicyFormat::Toml => brackets(b, limit, true),
        PolicyFormat::Yaml => Yaml::new(b, limit).run(),
    }
}

/// JSON, and TOML with its comments and four kinds of strings: every
/// `[` and `{` outside strings and comments opens a level.
fn brackets(b: &[u8], limit: usize, toml: bool) -> Option<usize> {
    let (mut depth, mut line, mut i) = (0usize, 1usize, 0usize);
    while let Some(&c) = b.get(i) {
        i += 1;
        match c {
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' if !toml => i = string_end(b, i, b'"', true, true, &mut line),
            b'#' if toml => {
                while b.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'"' | b'\'' if toml => {
                let escapes = c == b'"';
                if b[i..].starts_with(&[c, c]) {
                    // """…""" or '''…''': to three quotes, and up to two
                    // more that belong to the string.
                    i += 2;
                    loop {
                        i = string_end(b, i, c, escapes, true, &mut line);
                        if i >= b.len() || b[i..].starts_with(&[c, c]) {
                            break;
                        }
                    }
                    i = (i + 2).min(b.len());
                    for _ in 0..2 {
                        if b.get(i) == Some(&c) {
                            i += 1;
                        }
                    }
                } else {
                    i = string_end(b, i, c, escapes, false, &mut line);
                }
            }
            _ => {}
        }
    }
    None
}

/// The index after the quote closing a string whose content starts at
/// `i`. A string that cannot span lines ends at the line break (left for
/// the caller to count).
fn string_end(
    b: &[u8],
    mut i: usize,
    quote: u8,
    escapes: bool,
    multiline: bool,
    line: &mut usize,
) -> usize {
    while let Some(&c) = b.get(i) {
        if c == b'\n' {
            if !multiline {
                return i;
            }
            *line += 1;
        }
        i += 1;
        if c == quote {
            return i;
        }
        if escapes && c == b'\\' && b.get(i).is_some_and(|&e| e != b'\n' || multiline) {
            if b[i] == b'\n' {
                *line += 1;
            }
            i += 1;
        }
    }
    i
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Mapping,
    Sequence,
    /// A sequence at the column of its mapping (`key:` then `- a`).
    IndentlessSequence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Sequence,
    Mapping,
    /// The one-pair mapping of a `key: value` entry in a flow sequence.
    Pair,
}

/// A reading of YAML that keeps just enough of libyaml's scanner state to
/// know where tokens start: its flow collections, its stack of block
/// indentations, and whether it is inside a plain scalar.
struct Yaml<'a> {
    b: &'a [u8],
    limit: usize,
    i: usize,
    line: usize,
    line_start: usize,
    /// The next byte begins a line in block context.
    fresh_line: bool,
    /// Open flow collections, innermost last, each with the deepest
    /// nesting reached inside it; in flow context when any.
    flow: Vec<(Flow, usize)>,
    /// How many levels the last flow collection to close nested.
    closed_depth: usize,
    /// The last token closed a flow collection: a `:` now makes that
    /// collection a key, under a mapping that opens only then.
    after_close: bool,
    /// A key reached deeper than the limit, counted once its mapping opened.
    too_deep: bool,
    /// Open block collections, innermost last: their column and kind.
    blocks: Vec<(usize, Block)>,
    /// Inside a plain (unquoted) scalar, where quotes and, in block
    /// context, brackets are text.
    plain: bool,
    /// The column of the first token of the current block node: the key,
    /// if a `:` follows.
    key: Option<usize>,
}

impl<'a> Yaml<'a> {
    fn new(b: &'a [u8], limit: usize) -> Self {
        let bom = if b.starts_with("\u{feff}".as_bytes()) {
            3
        } else {
            0
        };
        Yaml {
            b,
            limit,
            i: bom,
            line: 1,
            line_start: bom,
            fresh_line: true,
            flow: Vec::new(),
            closed_depth: 0,
            after_close: false,
            too_deep: false,
            blocks: Vec::new(),
            plain: false,
            key: None,
        }
    }

    /// The length of the line break at `i`, 0 if none: YAML 1.1 breaks
    /// lines at CR, LF, CR LF, NEL, LS and PS.
    fn line_break(&self, i: usize) -> usize {
        match &self.b[i.min(self.b.len())..] {
            [b'\r', b'\n', ..] => 2,
            [b'\r' | b'\n', ..] => 1,
            [0xC2, 0x85, ..] => 2,
            [0xE2, 0x80, 0xA8 | 0xA9, ..] => 3,
            _ => 0,
        }
    }

    fn blank(&self, i: usize) -> bool {
        matches!(self.b.get(i), Some(b' ' | b'\t'))
    }

    /// A blank, a line break or the end.
    fn blankz(&self, i: usize) -> bool {
        i >= self.b.len() || self.blank(i) || self.line_break(i) > 0
    }

    fn new_line(&mut self, len: usize) {
        self.i += len;
        self.line += 1;
        self.line_start = self.i;
    }

    fn skip_to_line_break(&mut self) {
        while self.i < self.b.len() && self.line_break(self.i) == 0 {
            self.i += 1;
        }
    }

    fn height(&self) -> usize {
        self.flow.len() + self.blocks.len()
    }

    fn open_flow(&mut self, kind: Flow) {
        let height = self.height() + 1;
        self.flow.push((kind, height));
    }

    fn close_flow(&mut self) -> Option<Flow> {
        let (kind, deepest) = self.flow.pop()?;
        let height = self.height();
        if let Some((_, parent)) = self.flow.last_mut() {
            *parent = (*parent).max(deepest);
        }
        self.closed_depth = deepest.saturating_sub(height);
        Some(kind)
    }

    /// A mapping just opened at the current height around the key before
    /// it: when that key is a flow collection (the token before closed
    /// one), its levels lie one deeper than they were counted.
    fn key_under_new_mapping(&mut self, key_is_collection: bool) {
        if key_is_collection {
            let deepest = self.height() + self.closed_depth;
            self.too_deep |= deepest > self.limit;
            if let Some((_, d)) = self.flow.last_mut() {
                *d = (*d).max(deepest);
            }
        }
    }

    fn top(&self) -> Option<(usize, Block)> {
        self.blocks.last().copied()
    }

    /// libyaml's `roll_indent`: a block collection opens at `col` if it
    /// is right of the innermost one.
    fn open_block(&mut self, col: usize, kind: Block) {
        match self.top() {
            Some((c, _)) if c >= col => {
                if c == col && kind == Block::Sequence && self.top().unwrap().1 == Block::Mapping {
                    self.blocks.push((col, Block::IndentlessSequence));
                }
            }
            _ => self.blocks.push((col, kind)),
        }
    }

    /// libyaml's `unroll_indent` before a block token at `col`.
    fn close_blocks(&mut self, col: usize, entry: bool) {
        while let Some((c, kind)) = self.top() {
            if c > col || (c == col && kind == Block::IndentlessSequence && !entry) {
                self.blocks.pop();
            } else {
                break;
            }
        }
    }

    fn run(mut self) -> Option<usize> {
        while self.i < self.b.len() {
            if std::mem::take(&mut self.fresh_line) && self.flow.is_empty() {
                self.block_line();
                continue;
            }
            let n = self.line_break(self.i);
            if n > 0 {
                self.new_line(n);
                self.fresh_line = true;
            } else if self.blank(self.i) {
                self.i += 1;
            } else if self.plain {
                self.plain_char();
            } else {
                self.token();
            }
            if self.too_deep || self.height() > self.limit {
                return Some(self.line);
            }
        }
        None
    }

    /// The start of a line in block context: a blank or comment line, a
    /// document marker, a directive, the continuation of a plain scalar,
    /// or a new token.
    fn block_line(&mut self) {
        let mut k = self.i;
        while self.blank(k) {
            k += 1;
        }
        if k >= self.b.len() || self.line_break(k) > 0 {
            self.i = k;
            return;
        }
        let rest = &self.b[k..];
        let col = k - self.line_start;
        if rest[0] == b'#' {
            self.plain = false;
            self.i = k;
            self.skip_to_line_break();
            return;
        }
        if col == 0 && (rest.starts_with(b"---") || rest.starts_with(b"...")) && self.blankz(k + 3)
        {
            self.blocks.clear();
            self.plain = false;
            self.key = None;
            self.i = k + 3;
            return;
        }
        if col == 0 && rest[0] == b'%' {
            self.plain = false;
            self.i = k;
            self.skip_to_line_break();
            return;
        }
        self.i = k;
        if self.plain && self.top().is_none_or(|(c, _)| col > c) {
            return;
        }
        self.plain = false;
        self.key = None;
    }

    /// Inside a plain scalar: what ends it, else text.
    fn plain_char(&mut self) {
        let c = self.b[self.i];
        let after_blank = self.i == self.line_start || self.blank(self.i - 1);
        let ends = match c {
            b'#' => after_blank,
            b':' => {
                self.blankz(self.i + 1)
                    || (!self.flow.is_empty()
                        && matches!(
                            self.b.get(self.i + 1),
                            Some(b',' | b'?' | b'[' | b']' | b'{' | b'}')
                        ))
            }
            b',' | b'[' | b']' | b'{' | b'}' => !self.flow.is_empty(),
            _ => false,
        };
        if ends {
            self.plain = false;
        } else {
            self.i += 1;
        }
    }

    fn mark_key(&mut self, col: usize) {
        if self.flow.is_empty() && self.key.is_none() {
            self.key = Some(col);
        }
    }

    /// A token starts at `self.i`, as libyaml's `fetch_next_token` sees it.
    fn token(&mut self) {
        let i = self.i;
        let c = self.b[i];
        let col = i - self.line_start;
        let block = self.flow.is_empty();
        let indicator = !block || self.blankz(i + 1);
        let after_close = std::mem::take(&mut self.after_close);
        if block {
            self.close_blocks(col, c == b'-' && self.blankz(i + 1));
        }
        self.i += 1;
        match c {
            b'#' => self.skip_to_line_break(),
            b'[' | b'{' => {
                self.mark_key(col);
                self.open_flow(if c == b'[' {
                    Flow::Sequence
                } else {
                    Flow::Mapping
                });
            }
            b']' | b'}' => {
                if self.close_flow() == Some(Flow::Pair) {
                    self.close_flow();
                }
                self.after_close = true;
            }
            b',' => {
                if self.flow.last().is_some_and(|f| f.0 == Flow::Pair) {
                    self.close_flow();
                }
            }
            b'-' if self.blankz(i + 1) => {
                if block {
                    self.open_block(col, Block::Sequence);
                }
                self.key = None;
            }
            b'?' | b':' if indicator => {
                let height = self.height();
                if block {
                    let at = if c == b'?' {
                        col
                    } else {
                        self.key.unwrap_or(col)
                    };
                    self.open_block(at, Block::Mapping);
                } else if self.flow.last().is_some_and(|f| f.0 == Flow::Sequence) {
                    self.open_flow(Flow::Pair);
                }
                if c == b':' && self.height() > height {
                    self.key_under_new_mapping(after_close);
                }
                self.key = None;
            }
            b'*' | b'&' | b'!' => {
                self.mark_key(col);
                while !self.blankz(self.i)
                    && !matches!(self.b[self.i], b',' | b'[' | b']' | b'{' | b'}')
                {
                    self.i += 1;
                }
            }
            b'|' | b'>' if block => self.block_scalar(),
            b'\'' | b'"' => {
                self.mark_key(col);
                self.quoted(c);
            }
            _ => {
                self.mark_key(col);
                self.plain = true;
            }
        }
    }

    /// A quoted scalar, across lines, to its closing quote.
    fn quoted(&mut self, quote: u8) {
        while self.i < self.b.len() {
            let n = self.line_break(self.i);
            if n > 0 {
                self.new_line(n);
                continue;
            }
            let c = self.b[self.i];
            self.i += 1;
            if c == b'\\' && quote == b'"' {
                let n = self.line_break(self.i);
                if n > 0 {
                    self.new_line(n);
                } else {
                    self.i += 1;
                }
            } else if c == quote {
                if quote == b'\'' && self.b.get(self.i) == Some(&b'\'') {
                    self.i += 1;
                } else {
                    return;
                }
            }
        }
    }

    /// A literal (`|`) or folded (`>`) block scalar: its header, then its
    /// lines, indented as libyaml's `scan_block_scalar` decides.
    fn block_scalar(&mut self) {
        let mut increment = 0;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'+' | b'-' => {}
                b'1'..=b'9' => increment = usize::from(c - b'0'),
                _ => break,
            }
            self.i += 1;
        }
        self.skip_to_line_break();
        let n = self.line_break(self.i);
        if n == 0 {
            return;
        }
        self.new_line(n);
        let parent = self.top().map(|(c, _)| c);
        let mut indent = match (increment, parent) {
            (0, _) => 0,
            (m, Some(p)) => p + m,
            (m, None) => m,
        };
        if indent == 0 {
            let mut deepest = 0;
            let mut j = self.i;
            loop {
                let start = j;
                while self.b.get(j) == Some(&b' ') {
                    j += 1;
                }
                deepest = deepest.max(j - start);
                let n = self.line_break(j);
                if n == 0 {
                    break;
                }
                j += n;
            }
            indent = deepest.max(parent.map_or(0, |p| p + 1)).max(1);
        }
        loop {
            let mut k = self.i;
            while self.b.get(k) == Some(&b' ') {
                k += 1;
            }
            if k >= self.b.len() {
                self.i = k;
                return;
            }
            let n = self.line_break(k);
            if n == 0 && k - self.i < indent {
                self.fresh_line = true;
                return;
            }
            self.i = k;
            self.skip_to_line_break();
            let n = self.line_break(self.i);
            if n == 0 {
                return;
            }
            self.new_line(n);
        }
    }
}
