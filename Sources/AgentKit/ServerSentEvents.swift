/// Server-Sent Events read from a byte stream: `data:` lines joined, `event:` and `id:` kept,
/// comments skipped, an event dispatched at its blank line (the WHATWG rules, in brief). The
/// model client's streamed replies and MCP servers' answers are both read with it.
public struct ServerSentEvents: Sendable {
    public struct Event: Equatable, Sendable {
        public var type: String
        public var data: String
        public var id: String?
    }

    /// An event longer than this ends the stream as malformed: a server cannot make us hold any amount.
    public static let maxEventBytes = 8 << 20

    public struct TooLong: Error {}

    private var line: [UInt8] = []
    private var data: [String] = []
    private var type = ""
    private var id: String?
    private var held = 0

    public init() {}

    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) throws -> [Event] where Bytes.Element == UInt8 {
        var events: [Event] = []
        for byte in bytes {
            guard byte == UInt8(ascii: "\n") else {
                line.append(byte)
                held += 1
                if held > Self.maxEventBytes { throw TooLong() }
                continue
            }
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            let text = String(decoding: line, as: UTF8.self)
            line.removeAll(keepingCapacity: true)
            if text.isEmpty {
                if !data.isEmpty { events.append(Event(type: type.isEmpty ? "message" : type, data: data.joined(separator: "\n"), id: id)) }
                data.removeAll()
                type = ""
                held = 0
                continue
            }
            if text.hasPrefix(":") { continue }
            let (field, value) = Self.split(text)
            switch field {
            case "data": data.append(value)
            case "event": type = value
            case "id": id = value
            default: break
            }
        }
        return events
    }

    private static func split(_ line: String) -> (String, String) {
        guard let colon = line.firstIndex(of: ":") else { return (line, "") }
        var value = line[line.index(after: colon)...]
        if value.first == " " { value = value.dropFirst() }
        return (String(line[..<colon]), String(value))
    }
}
