import Foundation

/// The original's `book_hotel(hotel_name)`. The booking is recorded as its `tool_calls` row,
/// which is written in the same transaction as the tool's message, so one approval books once.
public struct BookHotelTool: Tool {
    public init() {}

    public let spec = ToolSpec(
        name: "book_hotel",
        description: "预定酒店 (Book a hotel). Needs a human's approval before it runs.",
        parameters: [
            "type": "object",
            "properties": ["hotel_name": ["type": "string", "description": "酒店名称 (the hotel's name)"]],
            "required": ["hotel_name"],
        ])

    public func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        guard let name = arguments["hotel_name"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty else {
            throw ToolError("book_hotel needs a non-empty string argument hotel_name")
        }
        return "成功预定了在\(name)的住宿。"
    }
}

/// The original's `multiply(a, b)`.
public struct MultiplyTool: Tool {
    public init() {}

    public let spec = ToolSpec(
        name: "multiply",
        description: "Multiply two numbers a and b (两个数相乘).",
        parameters: [
            "type": "object",
            "properties": ["a": ["type": "number"], "b": ["type": "number"]],
            "required": ["a", "b"],
        ])

    public func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        guard let a = arguments["a"]?.numberValue, let b = arguments["b"]?.numberValue, a.isFinite, b.isFinite else {
            throw ToolError("multiply needs two numbers a and b, each within ±1.8e308")
        }
        let product = a * b
        guard product.isFinite else { throw ToolError("the product of \(Self.format(a)) and \(Self.format(b)) is beyond ±1.8e308") }
        return Self.format(product)
    }

    /// Integers print as integers, as Python prints the product of two ints.
    static func format(_ value: Double) -> String {
        if value.isFinite, value.rounded() == value, abs(value) < 9.0e15 { return String(Int64(value)) }
        return String(value)
    }
}
