// @ts-check
/**
 * Risk wording, kept truthful (docs/model_card.md): the Lung-RADS v2022 category with its rule
 * and management, the Brock (PanCan) probability as the risk figure, and the CNN's malignancy
 * output as a research score, not a calibrated risk.
 */
import { h, pct } from "./dom.js";

/** Lung-RADS v2022 management recommendation per category. */
export const MANAGEMENT = /** @type {Record<string, string>} */ ({
  0: "Additional screening CT images and/or comparison with prior chest CT examinations are needed.",
  1: "Continue annual screening with LDCT in 12 months.",
  2: "Continue annual screening with LDCT in 12 months.",
  3: "LDCT in 6 months.",
  "4A": "LDCT in 3 months; PET/CT may be used if there is a solid component of 8 mm or more.",
  "4B": "Chest CT with or without contrast, PET/CT and/or tissue sampling, depending on the probability of malignancy and comorbidities.",
  "4X": "Chest CT with or without contrast, PET/CT and/or tissue sampling, depending on the probability of malignancy and comorbidities.",
});

export const LABELS = {
  brock: "Brock risk (PanCan)",
  brockHelp: "Probability of malignancy from the Brock (PanCan) model: the risk figure.",
  score: "Malignancy score (model, not a calibrated risk)",
  imageHelp: "Image number (InstanceNumber) of the original slice at the nodule's centre: the number PACS shows.",
  scoreHelp: "The CNN's malignancy output: a research score, not a probability of cancer (see docs/model_card.md).",
};

/** The category with its rule and management, as visible text. @param {{category: string, rule: string}} rads */
export function lungRadsBlock(rads) {
  return h("div", { class: "lung-rads", dataset: { category: rads.category } },
    h("p", {}, "Lung-RADS v2022 category ", h("strong", { class: `rads-category rads-${rads.category}`, text: rads.category })),
    h("p", { class: "rads-rule" }, h("span", { class: "muted", text: "Rule: " }), rads.rule),
    h("p", { class: "rads-management" }, h("span", { class: "muted", text: "Management: " }),
      MANAGEMENT[rads.category] || "—"));
}

/** The case's risk panel. @param {any} info the viewer case */
export function caseRisk(info) {
  const c = info.case;
  const brocks = info.findings.map((/** @type {any} */ vf) => vf.finding.brock_probability);
  const assumptions = c.brock_assumptions?.length ? ` Assumed: ${c.brock_assumptions.join("; ")}.` : "";
  return h("div", { class: "case-risk" },
    lungRadsBlock(c.lung_rads),
    h("p", { class: "brock" }, `${LABELS.brock}, highest finding: `,
      h("strong", { text: brocks.length ? pct(Math.max(...brocks)) : "—" }),
      h("span", { class: "muted", text: ` ${LABELS.brockHelp}${assumptions}` })),
    h("p", { class: "model-score" }, `${LABELS.score}, case: `, h("span", { text: pct(c.cancer_probability) }),
      h("span", { class: "muted", text: ` (${c.class}). ${LABELS.scoreHelp}` })));
}

/** A finding's location in words; legacy documents may hold "left middle" (a third of the height). @param {any} loc */
export function locationText(loc) {
  const where = loc.side === "left" && loc.zone === "middle" ? "left lung, mid zone" : `${loc.side} ${loc.zone} lobe`;
  return where + (loc.lingula ? " (lingula)" : "") + (loc.juxtapleural ? ", juxtapleural" : "");
}
