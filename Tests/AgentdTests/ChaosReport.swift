import Foundation

/// One line per failure scenario on standard output; `make chaos` collects them into a table.
enum ChaosReport {
    static func line(scenario: String, accepted: Int, completed: Int, lost: Int, duplicated: Int, recovery: Duration?, note: String) {
        let fields = [scenario, "\(accepted)", "\(completed)", "\(lost)", "\(duplicated)", recovery.map(seconds) ?? "-", note]
        print("CHAOS|" + fields.joined(separator: "|"))
    }

    static func seconds(_ duration: Duration) -> String {
        let value: Double = duration / .seconds(1)
        return String(format: "%.2f s", value)
    }
}
