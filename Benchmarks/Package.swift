// swift-tools-version:6.1
// Allocation benchmarks for the gateway: a separate package, so that the root build and its tests never pay for
// ordo-one/benchmark. Run them with scripts/bench-allocations.sh (it builds gwmock first and passes GWMOCK_BIN).
import PackageDescription

let package = Package(
    name: "GatewayBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(name: "gateway", path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "ProxyAllocations",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "GatewayProxy", package: "gateway"),
                .product(name: "GatewayConfig", package: "gateway"),
                .product(name: "GatewayIO", package: "gateway"),
            ],
            path: "ProxyAllocations",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
