// swift-tools-version:6.1
// The gateway, its mock provider and its load generator.
// Data flow, by target: CShims/COpenSSL/CNghttp2 (C) → GatewayIO (reactor, sockets, buffers)
// → GatewayHTTP (HTTP/1.1 codec, HTTP/2 sessions on nghttp2) → GatewayProxy (connections, upstream pools, forwarding);
// GatewayConfig holds the YAML schema; GatewayJSON the JSON reader and writer; GatewayTranslate rewrites
// OpenAI ⇄ Anthropic bodies; GatewayMock and GatewayBench are the test-side products.
import PackageDescription

// Release builds drop the runtime exclusivity checks: they cost about a quarter of the proxy's
// user-space time per request (perf, results/). Debug builds and tests keep them.
let swiftSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "gateway",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gateway", targets: ["gateway"]),
        .executable(name: "gwmock", targets: ["gwmock"]),
        .executable(name: "gwbench", targets: ["gwbench"]),
        // Libraries, so that Benchmarks/ (a separate package) can embed the gateway in-process.
        .library(name: "GatewayIO", targets: ["GatewayIO"]),
        .library(name: "GatewayHTTP", targets: ["GatewayHTTP"]),
        .library(name: "GatewayConfig", targets: ["GatewayConfig"]),
        .library(name: "GatewayProxy", targets: ["GatewayProxy"]),
        .library(name: "GatewayMock", targets: ["GatewayMock"]),
        .library(name: "GatewayTranslate", targets: ["GatewayTranslate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C glue: Linux calls Swift cannot see without _GNU_SOURCE.
        .target(name: "CShims"),
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        .target(name: "GatewayIO", dependencies: ["CShims", "COpenSSL"], swiftSettings: swiftSettings),
        .target(name: "GatewayHTTP", dependencies: ["GatewayIO", "CNghttp2"], swiftSettings: swiftSettings),
        .target(name: "GatewayConfig", dependencies: ["Yams"], swiftSettings: swiftSettings),
        .target(
            name: "GatewayProxy",
            dependencies: [
                "GatewayIO", "GatewayHTTP", "GatewayConfig", "GatewayPolicy", "GatewayStore", "GatewayMetrics",
                "GatewayAdmin", "GatewayTranslate",
            ],
            swiftSettings: swiftSettings
        ),
        // Policy: keys, groups, limits, budgets, prices and usage; no I/O of its own.
        .target(
            name: "GatewayPolicy",
            dependencies: ["GatewayIO", "GatewayHTTP", "GatewayConfig", "COpenSSL", "CShims"],
            swiftSettings: swiftSettings
        ),
        // Store: the audit writer thread, SQLite, reports; persisted keys, groups and spend.
        .target(name: "GatewayStore", dependencies: ["GatewayIO", "GatewayJSON", "CSQLite"], swiftSettings: swiftSettings),
        // JSON: a small writer and reader (members in document order, exact integers); no Foundation.
        .target(name: "GatewayJSON", swiftSettings: swiftSettings),
        // Translate: OpenAI ⇄ Anthropic requests, responses, SSE streams and errors; pure, bytes in and bytes out.
        .target(name: "GatewayTranslate", dependencies: ["GatewayJSON"], swiftSettings: swiftSettings),
        // Metrics: per-thread counters and histograms, summed at scrape time into the Prometheus text format.
        .target(name: "GatewayMetrics", dependencies: ["GatewayIO"], swiftSettings: swiftSettings),
        // Admin: the admin listener (keys, groups, usage, logs, reload, metrics, health).
        .target(
            name: "GatewayAdmin",
            dependencies: ["GatewayIO", "GatewayHTTP", "GatewayConfig", "GatewayPolicy", "GatewayStore", "GatewayMetrics"],
            swiftSettings: swiftSettings
        ),
        .target(name: "GatewayMock", dependencies: ["GatewayIO", "GatewayHTTP"], swiftSettings: swiftSettings),
        .target(
            name: "GatewayBench",
            dependencies: ["GatewayIO", "GatewayHTTP", .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "gateway",
            dependencies: [
                "GatewayProxy", "GatewayConfig", "GatewayPolicy", "GatewayStore", "CNghttp2", "COpenSSL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "gwmock",
            dependencies: ["GatewayMock", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "gwbench",
            dependencies: ["GatewayBench", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),

        .testTarget(name: "GatewayHTTPTests", dependencies: ["GatewayHTTP", "GatewayIO"]),
        .testTarget(name: "GatewayConfigTests", dependencies: ["GatewayConfig"]),
        .testTarget(name: "GatewayIntegrationTests", dependencies: ["GatewayIO", "GatewayHTTP"]),
        .testTarget(name: "GatewayBenchTests", dependencies: ["GatewayBench", "GatewayIO", "GatewayHTTP"]),
        .testTarget(name: "GatewayPolicyTests", dependencies: ["GatewayPolicy", "GatewayConfig", "GatewayIO"]),
        .testTarget(name: "GatewayStoreTests", dependencies: ["GatewayStore", "GatewayIO"]),
        .testTarget(name: "GatewayTranslateTests", dependencies: ["GatewayTranslate", "GatewayJSON"]),
        .testTarget(name: "GatewayAdminTests", dependencies: ["GatewayAdmin", "GatewayMetrics", "GatewayIO", "GatewayHTTP"]),
    ],
    swiftLanguageModes: [.v6]
)
