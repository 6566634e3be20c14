import "./jsonstream.test"
