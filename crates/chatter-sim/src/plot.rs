//! Line plots of experiment results, written as SVG.
//!
//! A [`Figure`] is a row of [`Panel`]s side by side; each panel has axes (linear or
//! logarithmic) and named [`Series`] of points, drawn as lines with markers. The SVG backend of
//! `plotters` writes text as `<text>` elements and leaves the font to the viewer, so drawing
//! needs no font library and no file but the output.
//!
//! ```
//! use chatter_sim::plot::{Figure, Panel, Series};
//!
//! let mut panel = Panel::new("latency", "nodes", "seconds").log_x();
//! panel.push(Series::new("median", vec![(10.0, 1.0), (100.0, 1.5), (1000.0, 2.0)]));
//! let svg = Figure::new("example", vec![panel]).to_svg().unwrap();
//! assert!(svg.contains("<text") && svg.contains("median"));
//! ```

use std::fmt;
use std::path::Path;

use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One named line of points `(x, y)`. Points with a non-finite coordinate (or a non-positive
/// one on a logarithmic axis) are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (for instance a bound or a reference line).
    pub dashed: bool,
}

impl Series {
    /// A solid line with markers.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            dashed: false,
        }
    }

    /// The same, drawn dashed without markers.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A corner of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Top left.
    UpperLeft,
    /// Top right.
    UpperRight,
    /// Bottom left.
    LowerLeft,
    /// Bottom right.
    LowerRight,
}

/// One chart: a title, two labelled axes, some series.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Logarithmic horizontal axis.
    pub x_log: bool,
    /// Logarithmic vertical axis.
    pub y_log: bool,
    /// Start the vertical axis at zero (linear axes only; default true).
    pub y_from_zero: bool,
    /// Where the legend goes (default the upper left corner).
    pub legend: Corner,
    /// Empty space above the highest point, as a share of the vertical range (default 0.08;
    /// more leaves room for the legend).
    pub headroom: f64,
    /// The lines.
    pub series: Vec<Series>,
}

impl Panel {
    /// An empty panel with linear axes, the vertical one from zero.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: false,
            y_log: false,
            y_from_zero: true,
            legend: Corner::UpperLeft,
            headroom: 0.08,
            series: Vec::new(),
        }
    }

    /// The same with a logarithmic horizontal axis.
    pub fn log_x(mut self) -> Self {
        self.x_log = true;
        self
    }

    /// The same with a logarithmic vertical axis.
    pub fn log_y(mut self) -> Self {
        self.y_log = true;
        self
    }

    /// The same with the legend in another corner.
    pub fn legend_at(mut self, corner: Corner) -> Self {
        self.legend = corner;
        self
    }

    /// The same with more (or less) room above the highest point.
    pub fn headroom(mut self, share: f64) -> Self {
        self.headroom = share.max(0.0);
        self
    }

    /// Adds a series.
    pub fn push(&mut self, series: Series) {
        self.series.push(series);
    }

    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&p| self.keeps(p))
    }

    fn keeps(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.x_log || x > 0.0) && (!self.y_log || y > 0.0)
    }

    /// Axis ranges covering every point, with a margin.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in self.points() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (1.0, 10.0, 1.0, 10.0);
        }
        let widen = |lo: f64, hi: f64, log: bool, from_zero: bool, top: f64| -> (f64, f64) {
            if log {
                let (lo, hi) = if hi / lo < 1.5 {
                    (lo / 1.5, hi * 1.5)
                } else {
                    (lo, hi)
                };
                (lo / 1.15, hi * 1.15 * (hi / lo).powf(top))
            } else {
                let lo = if from_zero { lo.min(0.0) } else { lo };
                let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
                let lo = if from_zero && lo >= 0.0 {
                    lo
                } else {
                    lo - span * 0.05
                };
                (lo, hi + span * top)
            }
        };
        (
            widen(
                x0,
                x1,
                self.x_log,
                false,
                if self.x_log { 0.0 } else { 0.08 },
            ),
            widen(y0, y1, self.y_log, self.y_from_zero, self.headroom),
        )
    }
}

/// A row of panels with a title, written as one SVG.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Title above the panels.
    pub title: String,
    /// The panels, left to right.
    pub panels: Vec<Panel>,
}

/// Drawing failed (in practice: the file could not be written).
#[derive(Debug)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

const PANEL_WIDTH: u32 = 560;
const HEIGHT: u32 = 420;
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

impl Figure {
    /// A figure of these panels.
    pub fn new(title: impl Into<String>, panels: Vec<Panel>) -> Self {
        Self {
            title: title.into(),
            panels,
        }
    }

    /// The figure as an SVG document.
    pub fn to_svg(&self) -> Result<String, PlotError> {
        let mut svg = String::new();
        {
            let size = (PANEL_WIDTH * self.panels.len().max(1) as u32, HEIGHT);
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            self.draw(&root).map_err(|e| PlotError(e.to_string()))?;
            root.present().map_err(|e| PlotError(e.to_string()))?;
        }
        Ok(svg)
    }

    /// Writes the figure to `path` (an `.svg` file), creating its directory if needed.
    pub fn write_svg(&self, path: &Path) -> Result<(), PlotError> {
        let svg = self.to_svg()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| PlotError(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(path, svg).map_err(|e| PlotError(format!("{}: {e}", path.display())))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 18))?;
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let ((x0, x1), (y0, y1)) = panel.ranges();
            // Logarithmic axes get their ticks at 1, 2, 5 times powers of ten: plotters' own
            // start at the first power of ten in range, which may be the only one.
            let lx = || (x0..x1).log_scale().with_key_points(log_ticks(x0, x1));
            let ly = || (y0..y1).log_scale().with_key_points(log_ticks(y0, y1));
            match (panel.x_log, panel.y_log) {
                (false, false) => draw_panel(area, panel, x0..x1, y0..y1)?,
                (true, false) => draw_panel(area, panel, lx(), y0..y1)?,
                (false, true) => draw_panel(area, panel, x0..x1, ly())?,
                (true, true) => draw_panel(area, panel, lx(), ly())?,
            }
        }
        Ok(())
    }
}

fn draw_panel<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x: X,
    y: Y,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (k, s) in panel.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&p| panel.keeps(p))
            .collect();
        let style = color.stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?
        };
        drawn.label(s.name.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
        if !s.dashed {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    if !panel.series.is_empty() {
        chart
            .configure_series_labels()
            .position(match panel.legend {
                Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
                Corner::UpperRight => SeriesLabelPosition::UpperRight,
                Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
                Corner::LowerRight => SeriesLabelPosition::LowerRight,
            })
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

/// Ticks of a logarithmic axis from `lo` to `hi`: 1, 2 and 5 times the powers of ten in range,
/// or every integer multiple if that gives fewer than three.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |multiples: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|e| multiples.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// A tick label with three significant digits at most and no trailing zeros: 1000, 2.5, 0.015,
/// 1.5e6.
fn short(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        "0".to_owned()
    } else if !(1e-4..1e6).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_labels_drop_trailing_zeros() {
        assert_eq!(short(1000.0), "1000");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(0.015), "0.015");
        assert_eq!(short(0.005), "0.005");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(-0.5), "-0.5");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(2_000_000.0), "2.0e6");
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        assert_eq!(
            log_ticks(8.0, 2300.0),
            [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
        );
        assert_eq!(log_ticks(16.0, 106.0), [20.0, 50.0, 100.0]);
        assert_eq!(log_ticks(1.5, 4.5), [2.0, 3.0, 4.0]);
    }

    #[test]
    fn svg_has_text_lines_and_legend() {
        let mut a = Panel::new("a", "N", "seconds").log_x();
        a.push(Series::new(
            "p50",
            vec![(10.0, 1.0), (100.0, 2.0), (1000.0, f64::NAN)],
        ));
        a.push(Series::new("bound", vec![(10.0, 3.0), (1000.0, 3.0)]).dashed());
        let mut b = Panel::new("b", "loss %", "per node-hour").log_y();
        b.push(Series::new(
            "x",
            vec![(0.0, 0.0), (10.0, 5.0), (20.0, 50.0)],
        ));
        let empty = Panel::new("empty", "x", "y");
        let svg = Figure::new("title", vec![a, b, empty]).to_svg().unwrap();
        assert!(svg.starts_with("<svg"));
        for needle in ["<text", "title", "p50", "bound", "seconds", "<polyline"] {
            assert!(svg.contains(needle), "no {needle} in the SVG");
        }
    }
}
