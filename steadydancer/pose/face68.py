"""mediapipe's 468-point face mesh -> the 68 iBUG-300W points, as an index table.

The 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) is the one
OpenPose/DWPose write; "right" is the *person's* right (iBUG point 0 and the first brow, eye and
mouth corner are on the person's right, i.e. the image's left for a face looking at the camera).
mediapipe's mesh uses the same convention: its ``FACEMESH_RIGHT_EYE`` (33, 133, ...) and mouth
corner 61 are the person's right (checked on examples/astronaut.png: 33 and 61 are on the image's
left, 263 and 291 on its right).

How the table was derived (so that it can be checked and re-derived):

* Corners and centre-line points are anatomical landmarks that both layouts define: the eye
  corners (33/133, 362/263), mouth corners (61/291) and inner mouth corners (78/308), the chin
  (152), the philtrum/lip centres (0, 17, 13, 14) and the point under the nose (2).
* Points *between* landmarks were chosen on mediapipe's own contours (``FACEMESH_FACE_OVAL``,
  ``FACEMESH_*_EYE``, ``*_EYEBROW``, ``FACEMESH_LIPS``, ``FACEMESH_NOSE``): every face of a real
  clip (77 frontal frames of a talking person) and of the astronaut photo was put into a frame
  defined by two anchors of its region (eye corners for eyes/brows/nose, mouth corners for the
  mouth, eyes + mouth + chin for the jaw), and for each iBUG point the contour vertex nearest to
  where the iBUG mean shape (dlib's 68-point mean face) puts it, averaged over all faces, was
  taken. Near-ties were broken by mirror symmetry, so the table maps the person's left onto
  mediapipe's mirror vertex of the right (checked in the tests by flipping a photo).
* Every half of the table is the mirror of the other half under mediapipe's vertex symmetry
  (e.g. 234 <-> 454, 33 <-> 263, 61 <-> 291, 39 <-> 269), so left and right behave the same.

Choices worth knowing:

* Jaw: iBUG 0/16 sit at the height of the outer eye corners, at the top of the jaw line near
  the ears; mediapipe's oval vertices 127/356 are at that height (93/323 are lower, 162/389 are
  at the brows). The 7 points between them and the chin (152) are spread evenly along the
  oval, which is how the iBUG jaw points are annotated.
* Brows: mediapipe draws each brow as two rows; iBUG's mean shape lies on the lower row
  (46-53-52-65-55 / 285-295-282-283-276); the upper row (70-63-105-66-107) is about 6 % of the
  eye distance higher.
* Nose bridge: 6 is between the eyes at the inner-corner height (168 is higher, towards the
  brows); 4 is the tip as the iBUG annotation places it (27-30 are evenly spaced and 30 sits
  about a third of the bridge length above the point under the nose; mediapipe's 1 is lower,
  on the rounded tip, and gave an uneven bridge). 31/35 are the bottoms of the nose wings
  (240/460), 32/34 the nostrils (97/326).
* Eyes: the lids use the vertices at 1/3 and 2/3 of the corner-to-corner line, where iBUG puts
  37/38 and 40/41 (160, 158 / 153, 144 and mirror).
* Mouth: 49/53 and 50/52 are the lip-line point and the cupid's-bow peak of mediapipe's outer
  contour (39/269, 37/267); the lower outer lip and the inner lips use the vertices at the same
  fractions of the mouth width as the iBUG mean shape (with closed lips iBUG's inner points sit
  right under the outer ones: 61 under 50 etc.).
"""

from __future__ import annotations

from .skeleton import NUM_FACE

#: mediapipe face-mesh vertex for each of the 68 iBUG points (see the module docstring).
FACE68_FROM_MESH = (
    # jaw 0-16: the person's right ear height -> chin (152) -> left ear height
    127, 234, 93, 132, 58, 136, 149, 176, 152, 400, 378, 365, 288, 361, 323, 454, 356,
    # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer): mediapipe's lower rows
    46, 53, 52, 65, 55, 285, 295, 282, 283, 276,
    # nose bridge 27-30 (between the eyes -> tip), nose base 31-35 (right wing -> left wing)
    6, 197, 5, 4, 240, 97, 2, 326, 460,
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lips 48-59: right corner, upper lip to the left corner, lower lip back
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
    # inner lips 60-67: right inner corner, upper inner lip, left inner corner, lower inner lip
    78, 82, 13, 312, 308, 317, 14, 87,
)

#: For each iBUG point, the point on the other side of the face (the layout's mirror).
IBUG68_MIRROR = (
    tuple(range(16, -1, -1))  # jaw
    + tuple(range(26, 16, -1))  # brows
    + (27, 28, 29, 30, 35, 34, 33, 32, 31)  # nose
    + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40)  # eyes
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)  # outer lips
    + (64, 63, 62, 61, 60, 67, 66, 65)  # inner lips
)

assert len(FACE68_FROM_MESH) == NUM_FACE and len(set(FACE68_FROM_MESH)) == NUM_FACE
assert sorted(IBUG68_MIRROR) == list(range(NUM_FACE))
