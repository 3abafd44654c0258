import AgentKit

/// A `Tool` whose calls are counted and timed (`agentd_tool_calls_total`, `agentd_tool_call_seconds`):
/// ok when it answered, error when it threw. The wrapped tool does the work.
public struct MeteredTool: Tool {
    let tool: any Tool
    let metrics: ServiceMetrics

    public init(_ tool: any Tool, metrics: ServiceMetrics) {
        self.tool = tool
        self.metrics = metrics
    }

    public var spec: ToolSpec { tool.spec }
    public var serverLabel: String? { tool.serverLabel }
    public var origin: String? { tool.origin }
    public var runsAtMostOnce: Bool { tool.runsAtMostOnce }

    public func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        try await call(arguments: arguments, context: context).text
    }

    public func call(arguments: [String: JSONValue], context: ToolContext) async throws -> ToolOutput {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let output = try await tool.call(arguments: arguments, context: context)
            metrics.toolCall(spec.name, outcome: "ok", nanoseconds: (clock.now - start).nanoseconds)
            return output
        } catch is CancellationError {
            throw CancellationError()  // the run stopped: not the tool's failure
        } catch {
            metrics.toolCall(spec.name, outcome: "error", nanoseconds: (clock.now - start).nanoseconds)
            throw error
        }
    }
}

extension ToolRegistry {
    /// The same tools, each counted and timed.
    public func metered(by metrics: ServiceMetrics) -> ToolRegistry {
        ToolRegistry(
            tools: specs.compactMap { tools[$0.name] }.map { MeteredTool($0, metrics: metrics) }, approvalRequired: approvalRequired,
            unavailable: unavailable)
    }
}
