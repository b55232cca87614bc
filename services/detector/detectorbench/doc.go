// Package detectorbench measures the failure detector outside the library
// it measures: a deterministic simulation that plays generated heartbeat
// traces into our detector, a fixed timeout and Akka's phi accrual side by
// side and scores the predictor on a held-out trace (Evaluate), and the
// share of a core the detector's heartbeat path needs at scale
// (MeasureScale). `platform bench detector` prints both.
package detectorbench
