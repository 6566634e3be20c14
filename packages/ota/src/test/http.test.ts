import { describe, test, expect } from "@devicescript/test"
import { resolveUrl, originOf, redirectTarget } from "../http"
import { Backoff } from "../backoff"
import { URL } from "@devicescript/net"

describe("http", () => {
    test("resolveUrl: the Location forms servers send", () => {
        const base = "https://api.example.com/repos/o/r/releases/assets/1?x=1"
        expect(resolveUrl(base, "https://storage.example.net/blob?sig=a")).toBe("https://storage.example.net/blob?sig=a")
        expect(resolveUrl(base, "http://other:8080/p")).toBe("http://other:8080/p")
        expect(resolveUrl(base, "//cdn.example.org/a/b")).toBe("https://cdn.example.org/a/b")
        expect(resolveUrl(base, "/repos/o/r/releases/assets/2")).toBe("https://api.example.com/repos/o/r/releases/assets/2")
        expect(resolveUrl(base, "2?y=2")).toBe("https://api.example.com/repos/o/r/releases/assets/2?y=2")
        expect(resolveUrl(base, "?page=2")).toBe("https://api.example.com/repos/o/r/releases/assets/1?page=2")
        expect(resolveUrl("http://127.0.0.1:5000/a/b", "/c:d")).toBe("http://127.0.0.1:5000/c:d")
    })
    test("redirectTarget: https to http and other schemes are refused", async () => {
        expect(redirectTarget("https://a.example/x", "https://b.example/y")).toBe("https://b.example/y")
        expect(redirectTarget("http://a.example/x", "https://b.example/y")).toBe("https://b.example/y")
        expect(redirectTarget("http://a.example/x", "/z")).toBe("http://a.example/z")
        let msg = ""
        try {
            redirectTarget("https://api.example/x", "http://storage.example/blob")
        } catch (e) {
            msg = (e as Error).message
        }
        expect(msg).toBe("http: refusing redirect from https to http (api.example to storage.example)")
        msg = ""
        try {
            redirectTarget("https://api.example/x", "ftp://storage.example/blob")
        } catch (e) {
            msg = (e as Error).message
        }
        expect(msg).toBe("http: redirect from api.example to unsupported 'ftp:'")
    })
    test("originOf: scheme, host (case-insensitive) and port", () => {
        expect(originOf(new URL("https://API.github.com/x"))).toBe("https://api.github.com:443")
        expect(originOf(new URL("http://127.0.0.1:8080/x"))).toBe("http://127.0.0.1:8080")
        expect(originOf(new URL("http://h/x"))).toBe("http://h:80")
    })
    test("Backoff: doubles up to the cap, with jitter in [d/2, d]", () => {
        const b = new Backoff(1000, 8000)
        const caps = [1000, 2000, 4000, 8000, 8000, 8000]
        for (const d of caps) {
            const v = b.next()
            expect(v >= d / 2 && v <= d).toBe(true)
        }
        b.reset()
        expect(b.next() <= 1000).toBe(true)
    })
})
