// The example application's status light (src/main.ts blinks it every 100 ms): a Jacdac
// light bulb server on the simulated device's bus, as a light driven by the runtime's
// LightBulb server would be on the board.
import { JDServiceServer, LightBulbReg, SRV_LIGHT_BULB } from "jacdac-ts"

export class StatusLightServer extends JDServiceServer {
    constructor() {
        super(SRV_LIGHT_BULB)
        this.addRegister<[number]>(LightBulbReg.Brightness, [0])
        this.addRegister<[boolean]>(LightBulbReg.Dimmable, [false])
    }
}
