// The drawing page: strokes on a canvas (mouse, finger or pen, through Pointer Events),
// sent as a PNG to the server's POST /api/digit while you draw; the server makes the
// drawing MNIST-style (the same code as `mnist-pipeline predict`) and answers the digit,
// the ten probabilities and the 28x28 image the model saw.
//
// For tests and the benchmark, <body> carries data-strokes (strokes ended), data-answered
// (strokes answered since) and data-stroke-to-answer-ms (from the end of the last stroke
// to its answer on screen).
"use strict";

const INK_WIDTH = 22; // pixels on the 280x280 pad: MNIST's pen, about 2 of 28 pixels
const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const digitShown = document.getElementById("digit");
const confidence = document.getElementById("confidence");
const statusLine = document.getElementById("status");
const bars = [];

let drawing = null; // the pointer drawing now, and its last point
let inked = false; // anything on the pad
let inFlight = false; // a request is on its way
let dirty = false; // the pad changed since the last request was sent
let strokes = 0; // strokes ended
let strokeEnd = null; // when the last stroke ended (performance.now())
let answeredStroke = 0; // the last stroke whose answer is shown

for (let digit = 0; digit < 10; digit++) {
  const row = document.createElement("li");
  row.innerHTML = `<span>${digit}</span><span class="track"><span class="fill"></span></span><span class="value">–</span>`;
  document.getElementById("bars").append(row);
  bars.push(row);
}

function blank() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
  pen.fillStyle = "#000";
  seen.clearRect(0, 0, 28, 28);
  inked = false;
  dirty = false;
  digitShown.textContent = "?";
  confidence.textContent = "";
  statusLine.textContent = "";
  for (const row of bars) {
    row.classList.remove("top");
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".value").textContent = "–";
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

function line(from, to) {
  pen.beginPath();
  pen.moveTo(...from);
  pen.lineTo(...to);
  pen.stroke();
}

pad.addEventListener("pointerdown", (event) => {
  if (drawing) return; // one pointer at a time
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  const at = point(event);
  drawing = { id: event.pointerId, last: at };
  pen.beginPath(); // a dot where the stroke starts
  pen.arc(...at, INK_WIDTH / 2, 0, 2 * Math.PI);
  pen.fill();
  inked = true;
  changed();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing || event.pointerId !== drawing.id) return;
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const move of moves.length ? moves : [event]) {
    const at = point(move);
    line(drawing.last, at);
    drawing.last = at;
  }
  changed();
});

function endStroke(event) {
  if (!drawing || event.pointerId !== drawing.id) return;
  drawing = null;
  strokes += 1;
  strokeEnd = performance.now();
  document.body.dataset.strokes = String(strokes);
  changed();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function changed() {
  dirty = true;
  if (!inFlight) send();
}

function send() {
  dirty = false;
  inFlight = true;
  const stroke = strokes; // the strokes this request's drawing includes, if none is under way
  const complete = drawing === null;
  pad.toBlob(async (png) => {
    try {
      const response = await fetch("/api/digit", { method: "POST", body: png, headers: { "Content-Type": "image/png" } });
      const answer = await response.json();
      if (!inked) return; // cleared meanwhile
      if (response.ok) show(answer);
      else statusLine.textContent = answer.error;
      if (complete && stroke > answeredStroke && stroke === strokes) {
        answeredStroke = stroke;
        const elapsed = performance.now() - strokeEnd;
        document.body.dataset.answered = String(stroke);
        document.body.dataset.strokeToAnswerMs = elapsed.toFixed(1);
        if (response.ok) statusLine.textContent = `answered ${elapsed.toFixed(0)} ms after the stroke`;
      }
    } catch (error) {
      statusLine.textContent = `no answer from the server: ${error.message}`;
    } finally {
      inFlight = false;
      if (dirty) send();
    }
  }, "image/png");
}

function show(answer) {
  const top = answer.digit;
  digitShown.textContent = String(top);
  confidence.textContent = `${(100 * answer.probabilities[top]).toFixed(1)}% sure`;
  answer.probabilities.forEach((probability, digit) => {
    bars[digit].classList.toggle("top", digit === top);
    bars[digit].querySelector(".fill").style.width = `${(100 * probability).toFixed(1)}%`;
    bars[digit].querySelector(".value").textContent = `${(100 * probability).toFixed(1)}%`;
  });
  const image = seen.createImageData(28, 28);
  answer.image.flat().forEach((value, index) => {
    image.data.set([value, value, value, 255], 4 * index);
  });
  seen.putImageData(image, 0, 0);
}

document.getElementById("clear").addEventListener("click", blank);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") blank();
});

pen.lineCap = "round";
pen.lineJoin = "round";
pen.lineWidth = INK_WIDTH;
pen.strokeStyle = "#000";
blank();
