import AgentKit
import Foundation
import Postgres
@testable import Store
import Testing

/// The hand-written JSON of the hot values is the text JSONEncoder (sorted keys, slashes kept) gives.
@Suite("stored JSON")
struct StoreCodingTests {
    static let args: [String: JSONValue] = [
        "hotel_name": .string("如家酒店 \"quoted\" a/b\n"), "nights": .number(3), "price": .number(99.5), "tags": .array([.bool(true), .null]),
        "nested": .object(["z": .number(-1), "a": .string("é")]),
    ]

    @Test("tool calls, results and arguments encode as their Codable forms do")
    func sameAsCodable() throws {
        let calls = [ToolCall(id: "call_1", name: "book_hotel", args: Self.args), ToolCall(id: "call_2", name: "x", args: [:])]
        #expect(try StoreCoding.json(calls) == PostgresJSON(calls, encoder: StoreCoding.encoder))
        let result = JSONValue.object(["messages": .array([.object(Self.args)]), "empty": .array([])])
        #expect(try StoreCoding.json(result) == PostgresJSON(result, encoder: StoreCoding.encoder))
        #expect(try StoreCoding.json(Self.args) == PostgresJSON(Self.args, encoder: StoreCoding.encoder))
        // And they read back as they were.
        #expect(try StoreCoding.toolCalls(from: StoreCoding.json(calls)) == calls)
    }
}
