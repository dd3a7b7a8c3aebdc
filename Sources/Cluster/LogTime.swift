import FoundationEssentials

/// A log line's time: RFC 3339 in UTC with nanoseconds, as the shim writes
/// it (`2026-12-06T20:55:00.123456789Z`), more digits than Foundation's
/// format style reads. The node that reads the files and the managers that
/// merge and page them parse it the same way.
public enum LogTime {
    /// The time as a date (to the microsecond).
    public static func date(_ text: String) -> Date? {
        guard text.count >= 20, let base = wholeSecond(text) else { return nil }
        var fraction = 0.0
        if let dot = text.firstIndex(of: "."), let end = text.firstIndex(of: "Z") {
            fraction = Double("0" + text[dot..<end]) ?? 0
        }
        return base.addingTimeInterval(fraction)
    }

    /// The whole second the time falls in.
    public static func wholeSecond(_ text: String) -> Date? {
        guard text.count >= 19 else { return nil }
        return try? Date(String(text.prefix(19)) + "Z", strategy: format)
    }

    /// A value, shared: one per line would cost more than the line.
    private static let format = Date.ISO8601FormatStyle()
}
