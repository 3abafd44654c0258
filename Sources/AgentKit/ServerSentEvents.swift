/// Server-Sent Events read from a byte stream: `data:` lines joined, `event:` and `id:` kept,
/// comments skipped, an event dispatched at its blank line (the WHATWG rules, in brief). The
/// model client's streamed replies and MCP servers' answers are both read with it; it is on the
/// path of every streamed model reply, so it works on bytes and makes a string only of values.
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
    private var dataBytes = 0
    private var type = ""
    private var id: String?

    public init() {}

    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) throws -> [Event] where Bytes.Element == UInt8 {
        var events: [Event] = []
        for byte in bytes {
            guard byte == UInt8(ascii: "\n") else {
                line.append(byte)
                continue
            }
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line.isEmpty {
                if !data.isEmpty { events.append(Event(type: type.isEmpty ? "message" : type, data: data.joined(separator: "\n"), id: id)) }
                data.removeAll(keepingCapacity: true)
                dataBytes = 0
                type = ""
            } else if line.first != UInt8(ascii: ":") {
                field()
            }
            line.removeAll(keepingCapacity: true)
        }
        // Checked once a chunk rather than once a byte: a chunk is bounded by the transport.
        if line.count + dataBytes > Self.maxEventBytes { throw TooLong() }
        return events
    }

    /// The line's field (`name: value`, one space after the colon dropped).
    private mutating func field() {
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        var start = colon < line.endIndex ? colon + 1 : colon
        if start < line.endIndex, line[start] == UInt8(ascii: " ") { start += 1 }
        let name = line[..<colon]
        if name.elementsEqual("data".utf8) {
            dataBytes += line.count - start
            data.append(String(decoding: line[start...], as: UTF8.self))
        } else if name.elementsEqual("event".utf8) {
            type = String(decoding: line[start...], as: UTF8.self)
        } else if name.elementsEqual("id".utf8) {
            id = String(decoding: line[start...], as: UTF8.self)
        }
    }
}
