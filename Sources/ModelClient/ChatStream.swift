import AgentKit
import Foundation

/// A streamed chat completion (`stream: true`) read chunk by chunk: Server-Sent Events whose
/// `data:` is a `chat.completion.chunk`, ended by `data: [DONE]`. Text deltas come out as they
/// arrive; tool calls are put together from their pieces (by `index`); the usage comes in a last
/// chunk without choices (`stream_options.include_usage`).
struct ChatStream {
    struct Malformed: Error {
        var message: String
    }

    /// The stream ended before the reply was whole: the connection broke (worth another try).
    struct Truncated: Error {}

    private var events = ServerSentEvents()
    private var content = ""
    private var calls: [Int: (id: String, name: String, arguments: String)] = [:]
    private var usage: TokenUsage?
    private var model: String?
    private var finished = false
    private var done = false

    /// Reads `bytes` and returns the text deltas they complete, in order. Comments, `event:`,
    /// `id:` and `retry:` carry nothing for a chat completion: only `data:` is read.
    mutating func feed<Bytes: Sequence>(_ bytes: Bytes) throws -> [String] where Bytes.Element == UInt8 {
        var deltas: [String] = []
        let arrived: [ServerSentEvents.Event]
        do {
            arrived = try events.feed(bytes)
        } catch {
            throw Malformed(message: "model stream sent an event longer than \(ServerSentEvents.maxEventBytes) bytes")
        }
        for event in arrived {
            if let delta = try dispatch(event.data) { deltas.append(delta) }
        }
        return deltas
    }

    /// The whole reply, once the body has ended.
    mutating func finish(fallbackModel: String) throws -> ModelReply {
        // An event the body ended inside (no blank line after it) is dropped, as SSE says: the
        // connection broke in the middle of it.
        guard done || finished else { throw Truncated() }
        let toolCalls = calls.keys.sorted().map { index -> ToolCall in
            let call = calls[index] ?? (id: "", name: "", arguments: "")
            let trimmed = call.arguments.trimmingCharacters(in: .whitespacesAndNewlines)
            let args = trimmed.isEmpty ? [:] : ((try? JSONValue.parse(trimmed))?.objectValue ?? [:])
            return ToolCall(id: call.id.isEmpty ? "call_\(UUID().uuidString.prefix(8).lowercased())_\(index)" : call.id, name: call.name, args: args)
        }
        return ModelReply(message: .ai(content, toolCalls: toolCalls), usage: usage, model: model ?? fallbackModel)
    }

    /// Where a tool-call piece without `index` goes: a new call when it brings an id the last
    /// call does not have, or a name when the last call has one already; else the last call
    /// (its arguments continue, as servers that send one call per chunk do).
    private func unindexed(_ piece: JSONValue, _ position: Int) -> Int {
        guard let last = calls.keys.max(), let current = calls[last] else { return position }
        if let id = piece["id"]?.stringValue, !id.isEmpty {
            return current.id.isEmpty || current.id == id ? last : last + 1
        }
        if let name = piece["function"]?["name"]?.stringValue, !name.isEmpty, !current.name.isEmpty { return last + 1 }
        return last
    }

    /// `[DONE]`, between spaces or tabs: by bytes, as Foundation's `trimmingCharacters` was a
    /// measurable share of every streamed chunk.
    static func isDone(_ payload: String) -> Bool {
        var bytes = payload.utf8[...]
        while let first = bytes.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { bytes = bytes.dropFirst() }
        while let last = bytes.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { bytes = bytes.dropLast() }
        return bytes.elementsEqual("[DONE]".utf8)
    }

    /// One event (its `data:` lines joined); its text delta, if any.
    private mutating func dispatch(_ payload: String) throws -> String? {
        if Self.isDone(payload) {
            done = true
            return nil
        }
        // The hand-written parser (JSONText.swift, hardened against hostile nesting and malformed
        // text): Foundation's decoder was most of a streamed call's cost, once per chunk.
        guard case .object(let chunk)? = try? JSONValue(parsing: Array(payload.utf8)) else {
            throw Malformed(message: "model stream sent a chunk that is not a JSON object: \(payload.prefix(200))")
        }
        if let error = chunk["error"], error != .null {
            throw Malformed(message: "model stream reported an error: \((error["message"]?.stringValue ?? error.jsonText).prefix(300))")
        }
        if let name = chunk["model"]?.stringValue, !name.isEmpty { model = name }
        if let prompt = OpenAICompatibleModel.tokenCount(chunk["usage"]?["prompt_tokens"]),
            let completion = OpenAICompatibleModel.tokenCount(chunk["usage"]?["completion_tokens"])
        {
            usage = TokenUsage(promptTokens: prompt, completionTokens: completion)
        }
        guard case .array(let choices)? = chunk["choices"], let choice = choices.first else { return nil }
        if let reason = choice["finish_reason"], reason != .null { finished = true }
        guard let delta = choice["delta"] else { return nil }
        if case .array(let pieces)? = delta["tool_calls"] {
            for (position, piece) in pieces.enumerated() {
                let index = piece["index"]?.numberValue.flatMap { $0.isFinite && $0 >= 0 && $0 < 1000 ? Int($0) : nil } ?? unindexed(piece, position)
                var call = calls[index] ?? (id: "", name: "", arguments: "")
                if let id = piece["id"]?.stringValue, !id.isEmpty { call.id = id }
                if let name = piece["function"]?["name"]?.stringValue { call.name += name }
                switch piece["function"]?["arguments"] {
                case .string(let text)?: call.arguments += text
                case .object(let object)?: call.arguments += JSONValue.object(object).jsonText  // as some servers send it whole
                default: break
                }
                calls[index] = call
            }
        }
        guard let text = delta["content"]?.stringValue, !text.isEmpty else { return nil }
        content += text
        return text
    }
}
