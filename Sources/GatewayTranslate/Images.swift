import GatewayJSON

/// Images: OpenAI's `image_url` parts (an https URL or a base64 `data:` URL) ⇄ Anthropic's `image` blocks.
enum Images {
    /// An OpenAI `image_url` part as an Anthropic `image` block.
    static func anthropicBlock(fromOpenAIPart part: JSONValue, _ field: String) throws(TranslationError) -> JSONValue {
        // `image_url` is an object with `url` (and `detail`, which Anthropic has no use for); a bare string is accepted.
        let url: String
        if let bare = part["image_url"]?.stringValue {
            url = bare
        } else {
            let image = try JSONFields.object(part["image_url"], field + ".image_url")
            url = try JSONFields.string(image["url"], field + ".image_url.url")
        }
        let source: JSONValue
        if url.hasPrefix("data:") {
            guard let comma = url.firstIndex(of: ","), url[..<comma].hasSuffix(";base64") else {
                throw TranslationError(field: field + ".image_url.url", "a data URL must be base64-encoded")
            }
            let mediaType = url[url.index(url.startIndex, offsetBy: 5)..<comma].dropLast(";base64".count)
            source = .object([
                ("type", .string("base64")),
                ("media_type", .string(String(mediaType))),
                ("data", .string(String(url[url.index(after: comma)...]))),
            ])
        } else if url.hasPrefix("https://") || url.hasPrefix("http://") {
            source = .object([("type", .string("url")), ("url", .string(url))])
        } else {
            throw TranslationError(field: field + ".image_url.url", "must be an http(s) or a data URL")
        }
        return .object([("type", .string("image")), ("source", source)])
    }

    /// An Anthropic `image` block as an OpenAI `image_url` part.
    static func openAIPart(fromAnthropicBlock block: JSONValue, _ field: String) throws(TranslationError) -> JSONValue {
        let source = try JSONFields.object(block["source"], field + ".source")
        let url: String
        switch try JSONFields.string(source["type"], field + ".source.type") {
        case "url":
            url = try JSONFields.string(source["url"], field + ".source.url")
        case "base64":
            let mediaType = try JSONFields.string(source["media_type"], field + ".source.media_type")
            url = "data:" + mediaType + ";base64," + (try JSONFields.string(source["data"], field + ".source.data"))
        case let other:
            throw TranslationError(field: field + ".source.type", "unsupported image source \"\(other)\"")
        }
        return .object([("type", .string("image_url")), ("image_url", .object([("url", .string(url))]))])
    }
}
