import AgentKit
import Foundation
import Testing

/// The hand-written JSON codec against Foundation's, on the values the service stores and serves.
@Suite("JSON text")
struct JSONTextTests {
    static let samples: [JSONValue] = [
        .null, true, false, 0, -7, 42, 1.5, -0.25, 1e-7, 123456789012, 1e300,
        "", "plain", "引号\"和\\反斜杠/斜杠", "control \u{0}\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f} end", "emoji 👩‍💻 and 𝄞",
        [], [1, "two", nil, [3]], [:],
        ["messages": [["type": "human", "content": "订一个酒店"], ["type": "ai", "content": "", "tool_calls": [["id": "c1", "name": "book_hotel", "args": ["hotel_name": "如家"]]]]]],
        ["z": 1, "a": ["y": true, "b": nil], "m": "x"],
    ]

    static func foundation(_ value: JSONValue) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    @Test(arguments: samples)
    func serializesAsFoundationDoes(_ value: JSONValue) throws {
        #expect(String(decoding: value.serialized, as: UTF8.self) == String(decoding: try Self.foundation(value), as: UTF8.self))
    }

    @Test(arguments: samples)
    func parsesWhatFoundationWrites(_ value: JSONValue) throws {
        #expect(try JSONValue(parsing: try Self.foundation(value)) == value)
        #expect(try JSONValue(parsing: value.serialized) == value)
    }

    @Test func parsesEscapesWhitespaceAndSurrogatePairs() throws {
        let text = #" { "a" : [ 1 , 2.5e2 , -0 ] , "s" : "\u00e9\ud83d\ude00\/\n" , "t" : true , "n" : null } "#
        #expect(try JSONValue(parsing: Array(text.utf8)) == ["a": [1, 250, 0], "s": "é😀/\n", "t": true, "n": nil])
        // PostgreSQL's jsonb output puts a space after colons and commas.
        #expect(try JSONValue(parsing: Array(#"{"k": [1, {"x": "y"}]}"#.utf8)) == ["k": [1, ["x": "y"]]])
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "\"unterminated", "tru", "01x", "[1] 2", "\"tab\there\"", "{\"a\":1,}", "nan"])
    func rejectsMalformedText(_ text: String) {
        #expect(throws: JSONValue.SyntaxError.self) { try JSONValue(parsing: Array(text.utf8)) }
    }

    @Test func refusesHostileNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONValue.SyntaxError.self) { try JSONValue(parsing: Array(deep.utf8)) }
    }
}
