// The example application's status light (src/main.ts blinks it every 100 ms): a Jacdac
// light bulb server on the simulated device's bus, as a light driven by the runtime's
// LightBulb server would be on the board. It records when each write arrived.
import { JDServiceServer, LightBulbReg, SRV_LIGHT_BULB } from "jacdac-ts"

export class StatusLightServer extends JDServiceServer {
    /** Host time (ms, performance.now()) of every intensity write, the last 10000. */
    readonly writes: number[] = []

    constructor() {
        super(SRV_LIGHT_BULB)
        const intensity = this.addRegister<[number]>(LightBulbReg.Brightness, [0])
        this.addRegister<[boolean]>(LightBulbReg.Dimmable, [false])
        intensity.on("change", () => {
            this.writes.push(performance.now())
            if (this.writes.length > 10000) this.writes.splice(0, 5000)
        })
    }
}
