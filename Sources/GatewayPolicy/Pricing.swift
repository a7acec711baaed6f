// Usage and cost: what a response says it used, and what that costs at the model's price.
import GatewayConfig

/// Tokens a call used, as the provider reports them.
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    public var totalTokens: Int { promptTokens + completionTokens }
}

/// The cost of `usage` in micro-USD, rounded to the nearest: prices are USD per million tokens, so
/// micro-USD = tokens × price. No price (or no usage) costs 0.
/// Example: 1000 prompt and 500 completion tokens at 0.15 / 0.60 cost 150 + 300 = 450 micro-USD.
@inline(__always)
public func costMicroUSD(usage: Usage?, price: Price?) -> Int64 {
    guard let usage, let price else { return 0 }
    let cost = Double(max(0, usage.promptTokens)) * price.inputPerMTok
        + Double(max(0, usage.completionTokens)) * price.outputPerMTok
    guard cost.isFinite, cost > 0 else { return 0 }
    return cost >= 9.0e18 ? Int64.max : Int64(cost.rounded())
}
