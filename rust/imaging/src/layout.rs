//! Image Display Format (2010,0010) → image box rectangles on a sheet.

use crate::Error;

/// An image box on the sheet, in pixels from the top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// The most image boxes one film may have (a 20×20 grid is already absurd on film).
const MAX_BOXES: usize = 400;

fn counts(spec: &str, what: &str) -> Result<Vec<usize>, Error> {
    let parsed: Result<Vec<usize>, _> =
        spec.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match parsed {
        Ok(v) if !v.is_empty() && v.iter().all(|&n| n >= 1) && v.iter().sum::<usize>() <= MAX_BOXES => Ok(v),
        _ => Err(Error::Invalid(format!(
            "image display format {what}\\{spec}: expected positive integers separated by commas, at most {MAX_BOXES} boxes"
        ))),
    }
}

/// Split `total` pixels into `n` equal cells with `border` pixels before, between and after
/// them; the rounding remainder is shared evenly at both ends. Returns (start, size) per cell.
fn split(total: usize, n: usize, border: usize) -> Result<Vec<(usize, usize)>, Error> {
    let borders = border.saturating_mul(n + 1);
    let free = total
        .checked_sub(borders)
        .filter(|&f| f >= n)
        .ok_or_else(|| {
            Error::Dimensions(format!(
                "{total} pixels cannot hold {n} image boxes with a {border}-pixel border"
            ))
        })?;
    let cell = free / n;
    let offset = (free - cell * n) / 2;
    Ok((0..n)
        .map(|i| (offset + border + i * (cell + border), cell))
        .collect())
}

/// Image boxes of `format` on a `width`×`height` sheet with `border` pixels around and
/// between boxes, in image position order (left to right, top to bottom):
/// `STANDARD\C,R` (C columns, R rows), `ROW\a,b,…` (row k holds a_k boxes),
/// `COL\a,b,…` (column k holds a_k boxes). SLIDE, SUPERSLIDE and CUSTOM are refused.
pub fn layout(
    format: &str,
    width: usize,
    height: usize,
    border: usize,
) -> Result<Vec<Rect>, Error> {
    let format = format.trim();
    let (kind, spec) = format.split_once('\\').unwrap_or((format, ""));
    let mut boxes = Vec::new();
    match kind.trim().to_ascii_uppercase().as_str() {
        "STANDARD" => {
            let cr = counts(spec, "STANDARD")?;
            let [c, r] = cr[..] else {
                return Err(Error::Invalid(format!(
                    "image display format STANDARD\\{spec}: expected STANDARD\\C,R"
                )));
            };
            if c * r > MAX_BOXES {
                return Err(Error::Invalid(format!(
                    "STANDARD\\{spec}: more than {MAX_BOXES} boxes"
                )));
            }
            for (y, h) in split(height, r, border)? {
                for (x, w) in split(width, c, border)? {
                    boxes.push(Rect {
                        x,
                        y,
                        width: w,
                        height: h,
                    });
                }
            }
        }
        "ROW" => {
            let rows = counts(spec, "ROW")?;
            for ((y, h), &n) in split(height, rows.len(), border)?.into_iter().zip(&rows) {
                for (x, w) in split(width, n, border)? {
                    boxes.push(Rect {
                        x,
                        y,
                        width: w,
                        height: h,
                    });
                }
            }
        }
        "COL" => {
            let cols = counts(spec, "COL")?;
            let columns = split(width, cols.len(), border)?;
            let per_col: Vec<Vec<(usize, usize)>> = cols
                .iter()
                .map(|&n| split(height, n, border))
                .collect::<Result<_, _>>()?;
            // Positions run column by column, top to bottom within a column.
            for (ci, &(x, w)) in columns.iter().enumerate() {
                for &(y, h) in &per_col[ci] {
                    boxes.push(Rect {
                        x,
                        y,
                        width: w,
                        height: h,
                    });
                }
            }
        }
        other => {
            return Err(Error::Invalid(format!(
            "image display format {other:?} is not rendered (STANDARD\\C,R, ROW\\… and COL\\… are)"
        )))
        }
    }
    Ok(boxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_grid_with_border() {
        // 10 wide, 2 columns, border 1: free 7 → cells of 3, remainder 1 → offset 0
        let b = layout("STANDARD\\2,1", 10, 5, 1).unwrap();
        assert_eq!(
            b,
            vec![
                Rect {
                    x: 1,
                    y: 1,
                    width: 3,
                    height: 3
                },
                Rect {
                    x: 5,
                    y: 1,
                    width: 3,
                    height: 3
                }
            ]
        );
        let b = layout("STANDARD\\1,1", 4, 4, 0).unwrap();
        assert_eq!(
            b,
            vec![Rect {
                x: 0,
                y: 0,
                width: 4,
                height: 4
            }]
        );
        assert_eq!(layout("STANDARD\\2,3", 100, 100, 2).unwrap().len(), 6);
    }

    #[test]
    fn row_and_col() {
        let b = layout("ROW\\1,2", 8, 8, 0).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[0],
            Rect {
                x: 0,
                y: 0,
                width: 8,
                height: 4
            }
        );
        assert_eq!(
            b[2],
            Rect {
                x: 4,
                y: 4,
                width: 4,
                height: 4
            }
        );
        let b = layout("COL\\2,1", 8, 8, 0).unwrap();
        assert_eq!(
            b[1],
            Rect {
                x: 0,
                y: 4,
                width: 4,
                height: 4
            }
        );
        assert_eq!(
            b[2],
            Rect {
                x: 4,
                y: 0,
                width: 4,
                height: 8
            }
        );
    }

    #[test]
    fn bad_formats_are_errors() {
        for f in [
            "",
            "STANDARD",
            "STANDARD\\0,1",
            "STANDARD\\1,2,3",
            "STANDARD\\a,b",
            "SLIDE",
            "ROW\\",
            "STANDARD\\99999,99999",
        ] {
            assert!(layout(f, 100, 100, 1).is_err(), "{f}");
        }
        assert!(matches!(
            layout("STANDARD\\5,5", 10, 10, 2),
            Err(Error::Dimensions(_))
        ));
    }
}
