//! Bar charts drawn on the server as SVG: no script, nothing inline that a strict CSP
//! forbids (colours are presentation attributes, not style). Each chart names itself for
//! screen readers; the page puts the same numbers in a table beside it.

use std::fmt::Write;

/// Colours with at least 3:1 contrast against white (WCAG 1.4.11, graphics).
const PALETTE: &[&str] = &[
    "#1f5fa8", "#b3541e", "#2e7d32", "#6a3d9a", "#8c6d1f", "#c2185b",
];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 16.0;

fn escape(s: &str) -> String {
    crate::http::auth::escape(s)
}

/// A stacked bar chart: one bar per label, one colour per series. `id` makes the title and
/// description ids unique on the page.
pub(super) fn stacked_bars(
    id: &str,
    title: &str,
    labels: &[String],
    series: &[(String, Vec<u64>)],
) -> String {
    let totals: Vec<u64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT - 8.0) / labels.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let mut out = String::new();
    let total: u64 = totals.iter().sum();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d" class="chart"><title id="{id}-t">{t}</title><desc id="{id}-d">{n} in all; the highest bar is {max}. The numbers are in the table below.</desc>"##,
        t = escape(title),
        n = total,
    );
    // Axis and scale.
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444" stroke-width="1"/><text x="{lx}" y="{ty}" font-size="11" text-anchor="end" fill="#222">{max}</text><text x="{lx}" y="{y0}" font-size="11" text-anchor="end" fill="#222">0</text>"##,
        y0 = HEIGHT - BOTTOM,
        x1 = WIDTH - 4.0,
        lx = LEFT - 6.0,
        ty = TOP + 10.0,
    );
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + 4.0 + i as f64 * slot;
        let mut y = HEIGHT - BOTTOM;
        for (s, (_, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = plot_h * v as f64 / max as f64;
            y -= h;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{c}"/>"##,
                c = PALETTE[s % PALETTE.len()],
            );
        }
        // Every few labels, so they do not overlap.
        let every = labels.len().div_ceil(8).max(1);
        if i % every == 0 {
            let _ = write!(
                out,
                r##"<text x="{cx:.1}" y="{ly}" font-size="10" text-anchor="middle" fill="#222">{l}</text>"##,
                cx = x + bar_w / 2.0,
                ly = HEIGHT - BOTTOM + 14.0,
                l = escape(label),
            );
        }
    }
    // Legend.
    let mut lx = LEFT;
    for (s, (name, _)) in series.iter().enumerate() {
        let _ = write!(
            out,
            r##"<rect x="{lx:.1}" y="{ry}" width="10" height="10" fill="{c}"/><text x="{tx:.1}" y="{ty}" font-size="11" fill="#222">{n}</text>"##,
            ry = HEIGHT - 16.0,
            c = PALETTE[s % PALETTE.len()],
            tx = lx + 14.0,
            ty = HEIGHT - 7.0,
            n = escape(name),
        );
        lx += 24.0 + 7.0 * name.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_as_tall_as_their_numbers_and_names_are_text() {
        let labels: Vec<String> = (1..=3).map(|w| format!("w{w}")).collect();
        let svg = stacked_bars(
            "c",
            "Expiring <soon>",
            &labels,
            &[
                ("devices".into(), vec![2, 0, 4]),
                ("<b>x</b>".into(), vec![2, 0, 0]),
            ],
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Expiring &lt;soon&gt;"));
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("8 in all; the highest bar is 4"));
        // The first bar is two segments of half the height each: 2 of 4 = half the plot.
        let plot = HEIGHT - TOP - BOTTOM;
        assert!(
            svg.contains(&format!("height=\"{:.1}\"", plot / 2.0)),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect").count(),
            3 + 2,
            "3 segments and 2 legend keys"
        );
        assert!(!svg.contains("style="), "no inline style under the CSP");
    }

    #[test]
    fn an_empty_chart_still_draws() {
        let svg = stacked_bars("e", "Nothing", &["a".to_string()], &[]);
        assert!(svg.contains("0 in all"));
    }
}
