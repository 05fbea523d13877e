//! Inline SVG charts: lines over time, the reliability diagram, the alert timeline. Colours
//! come from CSS classes, so light mode, dark mode and print all restyle them.

use std::fmt::Write as _;

use super::data::{Bin, Transition};
use super::html::{escape, fmt_num, hhmm};

const W: f64 = 300.0;
const H: f64 = 110.0;
/// Room for the axis labels.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 16.0;

/// A series of a line chart: a name, its CSS class, and (time, value) points with gaps.
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub points: Vec<(i64, Option<f64>)>,
}

/// A line chart over `[from, to]`; `floor`/`ceiling` keep the y axis from zooming into
/// noise (a rate between 0 and 0.001 is drawn against `ceiling` at least). `guide`: a
/// dashed horizontal line (a threshold, a budget's 1.0).
pub fn lines(
    title: &str,
    series: &[Series],
    (from, to): (i64, i64),
    ceiling: f64,
    guide: Option<f64>,
) -> String {
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1));
    let max = values.fold(ceiling, f64::max).max(guide.unwrap_or(0.0)) * 1.1;
    let x = |t: i64| LEFT + (W - LEFT - 4.0) * (t - from) as f64 / (to - from).max(1) as f64;
    let y = |v: f64| (H - BOTTOM) - (H - BOTTOM - 6.0) * (v / max).clamp(0.0, 1.0);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = escape(title)
    );
    axes(&mut svg, max, (from, to), y(0.0));
    if let Some(g) = guide {
        let _ = write!(
            svg,
            "<line class=\"guide\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
            y = y(g)
        );
    }
    for s in series {
        // A missing value breaks the line; a lone point is a dot.
        for run in s.points.split(|p| p.1.is_none()) {
            let pts: Vec<String> = run
                .iter()
                .filter_map(|&(t, v)| Some(format!("{:.1},{:.1}", x(t), y(v?))))
                .collect();
            match pts.len() {
                0 => {}
                1 => {
                    let (cx, cy) = pts[0].split_once(',').expect("x,y");
                    let _ = write!(
                        svg,
                        "<circle class=\"{}\" cx=\"{cx}\" cy=\"{cy}\" r=\"2\"/>",
                        s.class
                    );
                }
                _ => {
                    let _ = write!(
                        svg,
                        "<polyline class=\"{}\" points=\"{}\"/>",
                        s.class,
                        pts.join(" ")
                    );
                }
            }
        }
    }
    svg.push_str("</svg>");
    let legend: String = series
        .iter()
        .map(|s| format!("<span class=\"key {}\">{}</span>", s.class, escape(s.name)))
        .collect();
    format!(
        "<figure><figcaption>{}</figcaption>{svg}<div class=\"legend\">{legend}</div></figure>",
        escape(title)
    )
}

fn axes(svg: &mut String, max: f64, (from, to): (i64, i64), y0: f64) {
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\"/>\
         <text class=\"tick\" x=\"{lx}\" y=\"10\" text-anchor=\"end\">{top}</text>\
         <text class=\"tick\" x=\"{lx}\" y=\"{y0:.1}\" text-anchor=\"end\">0</text>\
         <text class=\"tick\" x=\"{LEFT}\" y=\"{H}\">{start}</text>\
         <text class=\"tick\" x=\"{W}\" y=\"{H}\" text-anchor=\"end\">{end}</text>",
        lx = LEFT - 3.0,
        top = fmt_num(max / 1.1),
        start = hhmm(from),
        end = hhmm(to),
    );
}

/// The reliability diagram: per non-empty bin a bar as high as the bin's accuracy, its
/// mean confidence marked, the count on it; the diagonal is perfect calibration.
pub fn reliability(service: &str, model: &str, bins: &[Bin]) -> String {
    const S: f64 = 220.0;
    const PAD: f64 = 24.0;
    let side = S - 2.0 * PAD;
    let px = |v: f64| PAD + side * v.clamp(0.0, 1.0);
    let py = |v: f64| S - PAD - side * v.clamp(0.0, 1.0);
    let mut svg = format!(
        "<svg class=\"reliability\" data-service=\"{}\" data-model=\"{}\" viewBox=\"0 0 {S} {S}\" role=\"img\" aria-label=\"reliability diagram\">\
         <title>Reliability: accuracy per confidence bin</title>\
         <rect class=\"frame\" x=\"{PAD}\" y=\"{PAD}\" width=\"{side}\" height=\"{side}\"/>\
         <line class=\"guide\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{t}\" y2=\"{PAD}\"/>\
         <text class=\"tick\" x=\"{PAD}\" y=\"{S}\">0</text><text class=\"tick\" x=\"{t}\" y=\"{S}\" text-anchor=\"end\">1 confidence</text>\
         <text class=\"tick\" x=\"2\" y=\"{ty}\">1</text><text class=\"tick\" x=\"2\" y=\"{PAD}\" dy=\"-4\">accuracy</text>",
        escape(service),
        escape(model),
        b = S - PAD,
        t = S - PAD,
        ty = PAD + 8.0,
    );
    for bin in bins {
        let (x0, x1) = (px(bin.lower), px(bin.upper));
        let top = py(bin.accuracy);
        let gap = if x1 - x0 > 4.0 { 1.0 } else { 0.0 };
        let _ = write!(
            svg,
            "<rect class=\"bar\" data-bin=\"{}\" data-count=\"{}\" data-accuracy=\"{:.6}\" data-confidence=\"{:.6}\" \
             x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>({:.2}, {:.2}]: {} predictions, accuracy {:.3}, mean confidence {:.3}</title></rect>\
             <line class=\"mark\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{my:.1}\" y2=\"{my:.1}\"/>\
             <text class=\"count\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bin.bin,
            bin.count,
            bin.accuracy,
            bin.confidence,
            x0 + gap,
            (x1 - x0 - 2.0 * gap).max(0.5),
            (S - PAD - top).max(0.5),
            bin.lower,
            bin.upper,
            bin.count,
            bin.accuracy,
            bin.confidence,
            x0,
            x1,
            (x0 + x1) / 2.0,
            (top - 2.0).max(PAD - 2.0),
            short_count(bin.count),
            my = py(bin.confidence),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// 1234 → "1.2k": bin counts fit their bars.
fn short_count(n: i64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{}k", n / 1000),
        n if n >= 1000 => format!("{:.1}k", n as f64 / 1000.0),
        n => n.to_string(),
    }
}

/// The alert timeline: a row per (rule, key), a bar from each firing (or breaker open) to
/// its resolution (or the end of the report).
pub fn timeline(transitions: &[Transition], (from, to): (i64, i64)) -> String {
    let mut rows: Vec<(String, Bars)> = Vec::new();
    let mut open: std::collections::HashMap<String, (i64, &str)> = Default::default();
    for tr in transitions {
        let row = format!("{} {}", tr.rule, tr.key);
        let starts = matches!(tr.state.as_str(), "firing" | "open");
        let ends = matches!(tr.state.as_str(), "resolved" | "closed");
        if starts && !open.contains_key(&row) {
            let class = if tr.kind == "breaker" {
                "breaker"
            } else {
                "alert"
            };
            open.insert(row.clone(), (tr.t, class));
        } else if ends {
            if let Some((start, class)) = open.remove(&row) {
                push_bar(&mut rows, row, (start, tr.t, class));
            }
        }
    }
    let mut still: Vec<_> = open.into_iter().collect();
    still.sort();
    for (row, (start, class)) in still {
        push_bar(&mut rows, row, (start, to, class));
    }
    if rows.is_empty() {
        return String::new();
    }
    const ROW: f64 = 16.0;
    const LABEL: f64 = 260.0;
    const WIDTH: f64 = 760.0;
    let height = ROW * rows.len() as f64 + 18.0;
    let x = |t: i64| LABEL + (WIDTH - LABEL - 4.0) * (t - from) as f64 / (to - from).max(1) as f64;
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"alert timeline\">\
         <text class=\"tick\" x=\"{LABEL}\" y=\"{height}\">{}</text>\
         <text class=\"tick\" x=\"{WIDTH}\" y=\"{height}\" text-anchor=\"end\">{}</text>",
        hhmm(from),
        hhmm(to)
    );
    for (i, (label, bars)) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            svg,
            "<text class=\"label\" x=\"0\" y=\"{:.1}\">{}</text>",
            y + 11.0,
            escape(label)
        );
        for &(a, b, class) in bars {
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} {} → {}</title></rect>",
                x(a),
                y + 3.0,
                (x(b) - x(a)).max(2.0),
                ROW - 6.0,
                escape(label),
                hhmm(a),
                hhmm(b)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A timeline row's bars: (from, to, CSS class).
type Bars<'a> = Vec<(i64, i64, &'a str)>;

fn push_bar<'a>(rows: &mut Vec<(String, Bars<'a>)>, row: String, bar: (i64, i64, &'a str)) {
    match rows.iter_mut().find(|(r, _)| *r == row) {
        Some((_, bars)) => bars.push(bar),
        None => rows.push((row, vec![bar])),
    }
}
