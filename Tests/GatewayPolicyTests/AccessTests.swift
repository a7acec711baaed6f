import GatewayConfig
import GatewayPolicy
import Testing

@Suite struct AccessTests {
    static let groups = [
        GroupSettings(name: "interns", models: ["gpt-4o-mini", "embed-*"]),
        GroupSettings(name: "staff", models: ["gpt-*"]),
        GroupSettings(name: "everything", models: ["*"]),
    ]

    static let snapshot = Fixture.snapshot(groups: groups, keys: [
        KeySettings(name: "intern", source: .plain("sk-intern"), groups: ["interns"]),
        KeySettings(name: "both", source: .plain("sk-both"), groups: ["interns", "staff"]),
        KeySettings(name: "root", source: .plain("sk-root"), groups: ["everything"]),
        KeySettings(name: "nobody", source: .plain("sk-nobody")),
        KeySettings(name: "ghost", source: .plain("sk-ghost"), groups: ["deleted-group", "interns"]),
    ])

    @Test func oneGroup() throws {
        let s = AccessTests.snapshot
        let key = try #require(s.authenticate("sk-intern"))
        #expect(s.access(key, "gpt-4o-mini") == .allowed)
        #expect(s.access(key, "embed-small") == .allowed)
        #expect(s.access(key, "gpt-4o") == .notAllowed, "exists, outside the groups")
        #expect(s.access(key, "claude-haiku") == .notAllowed)
        #expect(s.access(key, "claude-x") == .notAllowed, "does not exist, and outside the groups")
        #expect(s.access(key, "embed-large") == .notFound, "a pattern allows it, no model carries it")
        #expect(s.access(key, "gpt-4o-mini-2") == .notAllowed)
        #expect(s.allowedModels(key) == [0, 2])
        #expect(s.prices[0] == Price(inputPerMTok: 0.15, outputPerMTok: 0.60))
        #expect(s.prices[1] == nil)
    }

    @Test func unionOfGroups() throws {
        let s = AccessTests.snapshot
        let key = try #require(s.authenticate("sk-both"))
        #expect(s.access(key, "gpt-4o") == .allowed)
        #expect(s.access(key, "gpt-4o-mini") == .allowed)
        #expect(s.access(key, "embed-small") == .allowed)
        #expect(s.access(key, "gpt-5") == .notFound)
        #expect(s.access(key, "claude-x") == .notAllowed)
        #expect(s.access(key, "claude-haiku") == .notAllowed)
        #expect(s.allowedModels(key) == [0, 1, 2])
        #expect(key.groups == ["interns", "staff"])
    }

    @Test func starAllowsEverythingAndEveryUnknownNameIsNotFound() throws {
        let s = AccessTests.snapshot
        let key = try #require(s.authenticate("sk-root"))
        for name in s.modelNames { #expect(s.access(key, name) == .allowed) }
        #expect(s.access(key, "anything-at-all") == .notFound)
        #expect(s.access(key, "") == .notFound)
        #expect(s.allowedModels(key) == [0, 1, 2, 3])
    }

    @Test func noGroupsMeansNothing() throws {
        let s = AccessTests.snapshot
        let key = try #require(s.authenticate("sk-nobody"))
        for name in s.modelNames + ["gpt-5", ""] { #expect(s.access(key, name) == .notAllowed) }
        #expect(s.allowedModels(key).isEmpty)
    }

    @Test func unknownGroupsAreIgnored() throws {
        let s = AccessTests.snapshot
        let key = try #require(s.authenticate("sk-ghost"))
        #expect(key.groups == ["interns"])
        #expect(s.allowedModels(key) == [0, 2])
    }

    @Test func apiGroupsReplaceConfigGroupsOfTheSameName() throws {
        let s = Fixture.snapshot(
            groups: [GroupSettings(name: "interns", models: ["gpt-4o-mini"])],
            keys: [KeySettings(name: "intern", source: .plain("sk-intern"), groups: ["interns", "extra"])],
            apiGroups: [GroupSettings(name: "interns", models: ["claude-*"]), GroupSettings(name: "extra", models: ["embed-*"])])
        let key = try #require(s.authenticate("sk-intern"))
        #expect(s.access(key, "gpt-4o-mini") == .notAllowed)
        #expect(s.access(key, "claude-haiku") == .allowed)
        #expect(s.access(key, "claude-opus") == .notFound)
        #expect(s.access(key, "embed-small") == .allowed)
        #expect(s.allowedModels(key) == [2, 3])
    }

    @Test func patternsInTheMiddle() throws {
        let s = Fixture.snapshot(
            groups: [GroupSettings(name: "g", models: ["gpt-*-mini", "*-haiku"])],
            keys: [KeySettings(name: "k", source: .plain("sk-k"), groups: ["g"])])
        let key = try #require(s.authenticate("sk-k"))
        #expect(s.access(key, "gpt-4o-mini") == .allowed)
        #expect(s.access(key, "gpt-4o") == .notAllowed)
        #expect(s.access(key, "claude-haiku") == .allowed)
        #expect(s.access(key, "gpt-9-mini") == .notFound)
        #expect(s.access(key, "x-haiku") == .notFound)
        #expect(s.access(key, "x-haiku-2") == .notAllowed)
    }
}
