//! A small log-log line chart as SVG, for B14: how a cost grows with the
//! work. On log-log axes a cost that grows linearly is a line of slope 1,
//! drawn dashed for reference through each series' first point.

use std::fmt::Write as _;

/// One line of the chart.
pub struct Series {
    pub name: &'static str,
    /// (x, y) points, x increasing; both positive.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The chart, its axes in decades spanning every point.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let decade_down = |v: f64| 10f64.powf(v.log10().floor());
    let decade_up = |v: f64| 10f64.powf(v.log10().ceil());
    let x_min = decade_down(all().map(|p| p.0).fold(f64::MAX, f64::min));
    let x_max = decade_up(all().map(|p| p.0).fold(f64::MIN, f64::max)).max(x_min * 10.0);
    let y_min = decade_down(all().map(|p| p.1).fold(f64::MAX, f64::min));
    let y_max = decade_up(all().map(|p| p.1).fold(f64::MIN, f64::max)).max(y_min * 10.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v.log10() - x_min.log10()) / (x_max.log10() - x_min.log10()) * plot_w;
    let y = |v: f64| {
        TOP + plot_h - (v.log10() - y_min.log10()) / (y_max.log10() - y_min.log10()) * plot_h
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Decade grid lines and labels.
    let mut v = x_min;
    while v <= x_max * 1.0001 {
        let px = x(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            number(v)
        );
        v *= 10.0;
    }
    let mut v = y_min;
    while v <= y_max * 1.0001 {
        let py = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            number(v)
        );
        v *= 10.0;
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} (log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{} (log scale)</text>"#,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for &(px, py) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{}: {} at {}</title></circle>"#,
                x(px),
                y(py),
                escape(s.name),
                number(py),
                number(px)
            );
        }
        // Linear growth from the first point, for reference, up to the last
        // point's size or to where it leaves the top of the plot.
        if let (Some(&(x0, y0)), Some(&(x1, _))) = (s.points.first(), s.points.last()) {
            let end = x1.min(x0 * y_max / y0);
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 4" opacity="0.6"/>"#,
                x(x0),
                y(y0),
                x(end),
                y(y0 * end / x0),
            );
        }
        let ly = TOP + 10.0 + i as f64 * 36.0;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text><text x="{}" y="{}" font-size="10" fill="#555">dashed: linear growth</text>"##,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(s.name),
            lx + 26.0,
            ly + 18.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A number as an axis or a tooltip shows it.
fn number(v: f64) -> String {
    if v >= 1000.0 {
        let s = format!("{v:.0}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 1.0 {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{v}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
