from common import *
from sklearn.linear_model import LogisticRegression
import collections
dev=load('dev_routing'); gold=load('train_gold'); Ed=E('dev_routing'); Eg=E('train_gold')
mi=[i for i,r in enumerate(gold) if r['source']=='routellm-mmlu']
cats=sorted(set(gold[i]['category'] for i in mi)); ci={c:k for k,c in enumerate(cats)}
y=np.array([ci[gold[i]['category']] for i in mi]); yg=np.array([gain(gold[i]) for i in mi])
# shrunk subject gains
glob=yg.mean()
def sub_gain(idx,lam=10):
    s=np.zeros(len(cats)); 
    for k in range(len(cats)):
        v=yg[idx][y[idx]==k]; s[k]=(v.sum()+lam*glob)/(len(v)+lam)
    return s
mm=[i for i,r in enumerate(dev) if r['source']=='routellm-mmlu']; M=[dev[i] for i in mm]
for C in [1,10,100]:
    clf=LogisticRegression(C=C,max_iter=3000).fit(Eg[mi],y)
    P=clf.predict_proba(Ed[mm])
    acc=np.mean(clf.classes_[P.argmax(1)]==np.array([ci[r['category']] for r in M]))
    for lam in [0,5,20]:
        sg=sub_gain(np.arange(len(mi)),lam)
        report(M,P@sg,f'C={C} lam={lam} acc={acc:.2f}')
