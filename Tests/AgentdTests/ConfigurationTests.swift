import AgentdApp
import Foundation
import Testing

@Suite("configuration")
struct ConfigurationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

    @Test("the README's Configuration table is the one `agentd serve --help` prints, row for row")
    func readmeTable() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        let header = try #require(lines.firstIndex(of: "| variable | default | meaning |"))
        let rows = lines[(header + 2)...].prefix { $0.hasPrefix("|") }.map { line in
            line.trimmingCharacters(in: CharacterSet(charactersIn: "| ")).components(separatedBy: " | ")
        }
        #expect(rows == AgentdConfiguration.variables.map { [$0.name, $0.defaultValue, $0.meaning] })
        for variable in AgentdConfiguration.variables {
            #expect(AgentdConfiguration.variablesHelp.contains(variable.name.replacingOccurrences(of: "`", with: "")))
        }
    }

    @Test("every variable the service reads is in the table, and nothing else")
    func everyVariableDocumented() throws {
        var read = Set<String>()
        for file in ["Sources/AgentdApp/AgentdConfiguration.swift", "Sources/Store/Migrator.swift"] {
            let source = try String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8)
            // value("X"), integer("X", …), seconds("X", …), flag("X"), number("X", …), environment["X"]
            let pattern = try NSRegularExpression(pattern: #"(?:value|integer|seconds|flag|number)\("([A-Z_]+)"|environment\["([A-Z_]+)"\]"#)
            for match in pattern.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
                for group in 1...2 {
                    if let range = Range(match.range(at: group), in: source) { read.insert(String(source[range])) }
                }
            }
        }
        let documented = Set(AgentdConfiguration.variables.map { $0.name.replacingOccurrences(of: "`", with: "") })
        #expect(read == documented)
    }
}
