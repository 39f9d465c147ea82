//! A line diff (longest common subsequence) for comparing two schema versions.

/// Lines beyond which a diff is not computed (the table grows with the product).
pub(crate) const LINES_MAX: usize = 2_000;
/// Cells of the table at most (4 MB).
const CELLS_MAX: usize = 1_000_000;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// How `old` became `new`, line by line; `None` when either is longer than [`LINES_MAX`].
pub(crate) fn lines<'a>(old: &'a str, new: &'a str) -> Option<Vec<Line<'a>>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if a.len() > LINES_MAX || b.len() > LINES_MAX || (a.len() + 1) * (b.len() + 1) > CELLS_MAX {
        return None;
    }
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(Line::Same(a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push(Line::Added(b[j]));
            j += 1;
        } else {
            out.push(Line::Removed(a[i]));
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_common_lines_and_marks_the_rest() {
        let diff = lines("a\nb\nc\n", "a\nc\nd\n").expect("small");
        assert_eq!(diff, [Line::Same("a"), Line::Removed("b"), Line::Same("c"), Line::Added("d")]);
        assert_eq!(lines("", "x").expect("small"), [Line::Added("x")]);
        assert!(lines(&"x\n".repeat(LINES_MAX + 1), "x").is_none());
    }
}
