#if canImport(Glibc)
import Glibc
#endif

// Latency percentile curves as a hand-written SVG, drawn the way HdrHistogram's plotter draws them: the x axis
// is the percentile on a log scale of 1 / (1 − p), so that 90, 99, 99.9 and 99.99 are evenly spaced; the y axis
// is the latency, on a log scale when the curves span more than a decade.

public struct LatencySeries: Sendable {
    public var name: String
    /// (percentile 0…100, latency in µs), in increasing percentile order.
    public var points: [(percentile: Double, us: Double)]
    /// Drawn dashed (a second rate of the same targets).
    public var dashed = false

    public init(name: String, points: [(percentile: Double, us: Double)]) {
        self.name = name
        self.points = points
    }

    /// The percentiles a chart samples: 50 → 99.99, evenly on the log axis.
    public static let chartPercentiles: [Double] = {
        var list: [Double] = []
        // x = log10(1 / (1 − p)) from log10(2) to 4, in 60 steps.
        let first = 0.30103
        for step in 0...60 {
            let x = first + (4 - first) * Double(step) / 60
            list.append((1 - 1 / pow10(x)) * 100)
        }
        return list
    }()

    /// The series of a histogram of nanoseconds.
    public init(name: String, histogram: BenchHistogram) {
        self.name = name
        points = LatencySeries.chartPercentiles.map { ($0, Double(histogram.valueAtPercentile($0)) / 1e3) }
    }
}

public enum LatencyChart {
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]

    /// An SVG document with one polyline per series, a legend, axes and grid lines.
    public static func svg(title: String, subtitle: String = "", series: [LatencySeries], width: Int = 860, height: Int = 500) -> String {
        // A long subtitle goes on two lines, split at the ", " nearest its middle.
        var subtitleLines = subtitle.isEmpty ? [] : [subtitle]
        if subtitle.count > 110 {
            let parts = subtitle.split(separator: ", ", omittingEmptySubsequences: false).map(String.init)
            var best = (index: 0, distance: Int.max)
            var length = 0
            for (index, part) in parts.enumerated().dropLast() {
                length += part.count + 2
                if abs(length - subtitle.count / 2) < best.distance { best = (index, abs(length - subtitle.count / 2)) }
            }
            if parts.count > 1 {
                subtitleLines = [parts[...best.index].joined(separator: ", ") + ",", parts[(best.index + 1)...].joined(separator: ", ")]
            }
        }
        let left = 80.0, right = 24.0, top = 48.0 + 18.0 * Double(subtitleLines.count), bottom = 64.0
        let plotWidth = Double(width) - left - right
        let plotHeight = Double(height) - top - bottom
        let xMin = log10(2.0), xMax = 4.0
        let values = series.flatMap { $0.points.map(\.us) }.filter { $0 > 0 }
        var yLow = values.min() ?? 1
        var yHigh = values.max() ?? 10
        if yHigh <= yLow { yHigh = yLow * 10 }
        let logY = yHigh / yLow > 10
        var ticks: [Double]
        if logY {
            yLow = pow10(floor(log10(yLow)))
            yHigh = pow10(ceil(log10(yHigh)))
            ticks = []
            var decade = yLow
            while decade <= yHigh * 1.0001 {
                for m in [1.0, 2, 5] where decade * m <= yHigh * 1.0001 { ticks.append(decade * m) }
                decade *= 10
            }
        } else {
            let step = niceStep((yHigh - 0) / 6)
            yLow = 0
            yHigh = ceil(yHigh / step) * step
            ticks = stride(from: 0, through: yHigh + step / 2, by: step).map { $0 }
        }
        func xPosition(_ percentile: Double) -> Double {
            let p = min(percentile, 99.9999) / 100
            let x = log10(1 / (1 - p))
            return left + (min(max(x, xMin), xMax) - xMin) / (xMax - xMin) * plotWidth
        }
        func yPosition(_ us: Double) -> Double {
            let fraction: Double
            if logY {
                fraction = (log10(max(us, yLow)) - log10(yLow)) / (log10(yHigh) - log10(yLow))
            } else {
                fraction = (us - yLow) / (yHigh - yLow)
            }
            return top + plotHeight * (1 - min(max(fraction, 0), 1))
        }
        func n(_ value: Double) -> String { Format.fixed(value, 1) }

        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" \
            font-family="sans-serif" font-size="12">

            """
        out += "<title>\(escape(title))</title>\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"white\"/>\n"
        out += "<text x=\"\(n(left))\" y=\"24\" font-size=\"16\" font-weight=\"bold\">\(escape(title))</text>\n"
        for (index, line) in subtitleLines.enumerated() {
            out += "<text x=\"\(n(left))\" y=\"\(n(44 + 17 * Double(index)))\" fill=\"#555\">\(escape(line))</text>\n"
        }
        // Grid and axis labels.
        out += "<g class=\"grid\" stroke=\"#ddd\" stroke-width=\"1\">\n"
        let xTicks: [(Double, String)] = [(50, "50%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%")]
        for (p, _) in xTicks {
            out += "<line x1=\"\(n(xPosition(p)))\" y1=\"\(n(top))\" x2=\"\(n(xPosition(p)))\" y2=\"\(n(top + plotHeight))\"/>\n"
        }
        for tick in ticks {
            out += "<line x1=\"\(n(left))\" y1=\"\(n(yPosition(tick)))\" x2=\"\(n(left + plotWidth))\" y2=\"\(n(yPosition(tick)))\"/>\n"
        }
        out += "</g>\n<g class=\"labels\" fill=\"#333\">\n"
        for (p, label) in xTicks {
            out += "<text x=\"\(n(xPosition(p)))\" y=\"\(n(top + plotHeight + 18))\" text-anchor=\"middle\">\(label)</text>\n"
        }
        for tick in ticks {
            out += "<text x=\"\(n(left - 8))\" y=\"\(n(yPosition(tick) + 4))\" text-anchor=\"end\">\(escape(usLabel(tick)))</text>\n"
        }
        out += "<text x=\"\(n(left + plotWidth / 2))\" y=\"\(n(Double(height) - 16))\" text-anchor=\"middle\">percentile</text>\n"
        out += "<text x=\"18\" y=\"\(n(top + plotHeight / 2))\" text-anchor=\"middle\" "
            + "transform=\"rotate(-90 18 \(n(top + plotHeight / 2)))\">latency\(logY ? " (log scale)" : "")</text>\n"
        out += "</g>\n"
        out += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(plotWidth))\" height=\"\(n(plotHeight))\" fill=\"none\" stroke=\"#888\"/>\n"
        // The curves.
        // Targets keep their colour across rates: direct is the first colour, the gateway the second, …
        let names = series.map { $0.name.split(separator: ",").first.map(String.init) ?? $0.name }
        var colorOf: [String: String] = [:]
        for name in names where colorOf[name] == nil { colorOf[name] = palette[colorOf.count % palette.count] }
        for (index, entry) in series.enumerated() {
            let color = colorOf[names[index]]!
            let dash = entry.dashed ? " stroke-dasharray=\"6 4\"" : ""
            let points = entry.points.filter { $0.us > 0 || !logY }.map { "\(n(xPosition($0.percentile))),\(n(yPosition($0.us)))" }
            out += "<polyline class=\"series\" data-name=\"\(escape(entry.name))\" fill=\"none\" stroke=\"\(color)\" "
                + "stroke-width=\"2\"\(dash) points=\"\(points.joined(separator: " "))\"><title>\(escape(entry.name))</title></polyline>\n"
        }
        // The legend.
        // The legend: lower right, where the curves (low on the left, rising to the right) seldom are.
        let legendWidth = 24.0 + 6 + 7.0 * Double(series.map(\.name.count).max() ?? 0) + 12
        let legendHeight = 18.0 * Double(series.count) + 8
        let legendLeft = left + plotWidth - legendWidth - 8
        let legendTop = top + plotHeight - legendHeight - 8
        out += "<g class=\"legend\">\n"
        out += "<rect x=\"\(n(legendLeft))\" y=\"\(n(legendTop))\" width=\"\(n(legendWidth))\" height=\"\(n(legendHeight))\" "
            + "fill=\"white\" fill-opacity=\"0.9\" stroke=\"#ccc\"/>\n"
        for (index, entry) in series.enumerated() {
            let y = legendTop + 18 + Double(index) * 18
            let color = colorOf[names[index]]!
            let dash = entry.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out += "<line x1=\"\(n(legendLeft + 8))\" y1=\"\(n(y - 4))\" x2=\"\(n(legendLeft + 32))\" y2=\"\(n(y - 4))\" stroke=\"\(color)\" stroke-width=\"3\"\(dash)/>\n"
            out += "<text x=\"\(n(legendLeft + 38))\" y=\"\(n(y))\">\(escape(entry.name))</text>\n"
        }
        out += "</g>\n</svg>\n"
        return out
    }

    static func usLabel(_ us: Double) -> String {
        if us >= 1_000_000 { return trimmed(us / 1_000_000) + " s" }
        if us >= 1000 { return trimmed(us / 1000) + " ms" }
        return trimmed(us) + " µs"
    }

    static func trimmed(_ value: Double) -> String {
        value == value.rounded() ? Format.fixed(value, 0) : Format.fixed(value, value < 10 ? 1 : 0)
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        let magnitude = pow10(floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where raw <= m * magnitude { return m * magnitude }
        return 10 * magnitude
    }

    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }
}

func pow10(_ x: Double) -> Double { pow(10, x) }
