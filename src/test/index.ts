import { describe, test, expect } from "@devicescript/test"
describe("placeholder", () => { test("x", () => { expect(1).toBe(1) }) })
